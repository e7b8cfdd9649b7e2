"""gencli.hub: resolving weights references against a fake Hub (real huggingface_hub calls)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gencli import hub as H
from gencli.hub import resolver
from gencli.errors import InputError, UsageError, WeightsNotFound
from hubserver import FakeHub, use_fake_hub

MODEL = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(256)) * 4  # content does not matter here
MODEL_V1 = b"old weights"
CONFIG = b'{"family": "ddpm"}'
PTH = bytes(range(256)) * 64
REPOS = {
    "org/repo": {
        "model.safetensors": MODEL,
        "config.json": CONFIG,
        "README.md": b"# card",
        "pytorch_model.bin": b"pickle, never fetched by a snapshot",
        "unet/config.json": b'{"unet": true}',
        "unet/diffusion_pytorch_model.safetensors": b"unet weights",
    },
    "org/repo@v1": {"model.safetensors": MODEL_V1, "config.json": b"{}"},
}
FILES = {"/releases/latest_net_G.pth": PTH, "/releases/cut.pth": PTH}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def hub():
    with FakeHub(repos=REPOS, files=FILES, truncate={"/releases/cut.pth": 1000}) as server:
        yield server


@pytest.fixture
def env(hub, tmp_path, monkeypatch):
    """Online, empty caches, everything pointed at the fake hub."""
    monkeypatch.setenv("GENCLI_CACHE", str(tmp_path / "gencli"))
    use_fake_hub(monkeypatch, hub, tmp_path / "hf")
    hub.reset_counts()
    return tmp_path


def go_offline(monkeypatch, tmp_path):
    use_fake_hub(monkeypatch, None, tmp_path / "hf", offline=True)


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg
    return msg


# ------------------------------------------------------------------------------------------
# Parsing
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("org/repo", H.HubRef("org/repo")),
        ("org/repo@v1", H.HubRef("org/repo", "v1")),
        ("org/my.model-v1.5@refs/pr/3", H.HubRef("org/my.model-v1.5", "refs/pr/3")),
        ("hf://org/repo", H.HubRef("org/repo")),
        ("hf://org/repo/model.safetensors", H.HubRef("org/repo", None, "model.safetensors")),
        ("hf://org/repo/sub/model.safetensors@v1", H.HubRef("org/repo", "v1", "sub/model.safetensors")),
        ("hf://org/repo@v1/sub/model.safetensors", H.HubRef("org/repo", "v1", "sub/model.safetensors")),
        ("hf://org/repo@refs/pr/1/model.safetensors", H.HubRef("org/repo", "refs/pr/1", "model.safetensors")),
        ("hf://org/repo/unet/", H.HubRef("org/repo", None, "unet/")),
        ("hf://datasets/org/data/train.json", H.HubRef("org/data", None, "train.json", "dataset")),
        ("ddpm:fashion-mnist", None),
        ("model", None),
        ("hf://repo-only", None),
        ("hf://org/repo@", None),
    ],
)
def test_parse_hub_ref(ref, expected):
    assert H.parse_hub_ref(ref) == expected


# ------------------------------------------------------------------------------------------
# Local files and bundled weights (no network at all)
# ------------------------------------------------------------------------------------------


def test_local_paths_and_bundled(env, hub, monkeypatch):
    tmp = env
    f = tmp / "mine.safetensors"
    f.write_bytes(b"mine")
    folder = tmp / "folder"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert H.resolve(str(f)) == f
    assert H.resolve(str(folder)) == folder
    assert H.resolve(str(folder), filename="config.json") == folder / "config.json"
    with pytest.raises(WeightsNotFound, match="has no model.safetensors"):
        H.resolve(str(folder), filename="model.safetensors")

    monkeypatch.setenv("HOME", str(tmp))
    assert H.resolve("~/mine.safetensors") == f

    bundled = tmp / "bundled"
    bundled.mkdir()
    (bundled / "ddpm_fashion.safetensors").write_bytes(b"bundled")
    monkeypatch.setattr(resolver, "bundled_weights_dir", lambda: bundled)
    assert H.resolve("ddpm_fashion.safetensors") == bundled / "ddpm_fashion.safetensors"

    for ref in ["missing.safetensors", "./weights/missing.pth", "some/dir/file.bin", "ddpm:fashion-mnist", "word"]:
        with pytest.raises(WeightsNotFound) as info:
            H.resolve(ref)
        msg = one_line(info)
        assert repr(ref) in msg and str(bundled) in msg and "--weights" in msg
    assert hub.request_count == 0


def test_local_sha256_mismatch_never_deletes_user_file(env):
    f = env / "mine.safetensors"
    f.write_bytes(b"mine")
    assert H.resolve(str(f), sha256=sha(b"mine")) == f
    assert H.resolve(str(f), sha256="SHA256:" + sha(b"mine").upper()) == f
    with pytest.raises(InputError) as info:
        H.resolve(str(f), sha256=sha(b"other"))
    assert "does not match the expected sha256" in one_line(info) and "left untouched" in str(info.value)
    assert f.read_bytes() == b"mine"
    with pytest.raises(UsageError, match="invalid sha256"):
        H.resolve(str(f), sha256="abc")


# ------------------------------------------------------------------------------------------
# Hub files
# ------------------------------------------------------------------------------------------


def test_download_then_cached_then_offline(env, hub, monkeypatch):
    path = H.resolve("org/repo", filename="model.safetensors", sha256=sha(MODEL))
    assert path.read_bytes() == MODEL
    assert str(path).startswith(str(env / "hf" / "hub"))
    assert any(r.method == "GET" and r.path.endswith("/resolve/main/model.safetensors") for r in hub.requests)

    hub.reset_counts()
    assert H.resolve("org/repo", filename="model.safetensors") == path  # online: cache first, no request
    assert H.resolve("hf://org/repo/model.safetensors") == path
    assert hub.request_count == 0

    go_offline(monkeypatch, env)
    assert H.resolve("org/repo", filename="model.safetensors", sha256=sha(MODEL)) == path
    assert hub.request_count == 0


def test_refresh_asks_the_hub(env, hub):
    path = H.resolve("org/repo", filename="config.json")
    hub.reset_counts()
    assert H.resolve("org/repo", filename="config.json", refresh=True) == path
    assert [r.method for r in hub.requests] == ["HEAD"]  # up to date: no second download


def test_revision_pinning(env, hub):
    v1 = H.resolve("org/repo@v1", filename="model.safetensors")
    assert v1.read_bytes() == MODEL_V1
    assert H.resolve("org/repo", revision="v1", filename="model.safetensors") == v1
    assert H.resolve("hf://org/repo/model.safetensors@v1") == v1
    assert H.resolve("hf://org/repo@v1/model.safetensors") == v1
    commit = hub.commit("org/repo", "v1")
    assert H.resolve(f"org/repo@{commit}", filename="model.safetensors").read_bytes() == MODEL_V1
    assert commit in str(v1)
    main = H.resolve("org/repo", filename="model.safetensors")
    assert main.read_bytes() == MODEL and main != v1
    with pytest.raises(UsageError, match="conflicting revisions"):
        H.resolve("org/repo@v1", revision="main", filename="model.safetensors")
    with pytest.raises(UsageError, match="conflicting files"):
        H.resolve("hf://org/repo/model.safetensors", filename="config.json")


def test_uncached_offline_is_one_line_weights_not_found(env, hub, monkeypatch):
    go_offline(monkeypatch, env)
    with pytest.raises(WeightsNotFound) as info:
        H.resolve("org/repo@v1", filename="config.json")
    msg = one_line(info)
    assert "'org/repo@v1'" in msg and "config.json" in msg
    assert "HF_HUB_OFFLINE" in msg and str(env / "hf" / "hub") in msg
    assert "--weights PATH" in msg and "gencli pull" in msg
    with pytest.raises(WeightsNotFound, match="HF_HUB_OFFLINE"):
        H.resolve("org/repo")  # snapshot
    assert hub.request_count == 0


def test_gencli_offline_and_allow_download(env, hub, monkeypatch):
    monkeypatch.setenv("GENCLI_OFFLINE", "1")
    with pytest.raises(WeightsNotFound, match="GENCLI_OFFLINE"):
        H.resolve("org/repo", filename="config.json")
    monkeypatch.delenv("GENCLI_OFFLINE")
    with pytest.raises(WeightsNotFound, match="downloads are not allowed"):
        H.resolve("org/repo", filename="config.json", allow_download=False)
    assert hub.request_count == 0
    path = H.resolve("org/repo", filename="config.json")
    assert H.resolve("org/repo", filename="config.json", allow_download=False) == path


@pytest.mark.parametrize(
    "ref, filename, needle",
    [
        ("nobody/nothing", "model.safetensors", "repository nobody/nothing not found"),
        ("nobody/nothing", None, "repository nobody/nothing not found"),
        ("org/repo@v9", "model.safetensors", "revision 'v9' not found"),
        ("org/repo@v9", None, "revision 'v9' not found"),
        ("org/repo", "missing.safetensors", "has no file missing.safetensors"),
        ("hf://org/repo/nofolder/", None, "has no folder nofolder/"),
    ],
)
def test_hub_errors_are_weights_not_found(env, ref, filename, needle):
    with pytest.raises(WeightsNotFound) as info:
        H.resolve(ref, filename=filename)
    msg = one_line(info)
    assert needle in msg and repr(ref) in msg and "--weights PATH" in msg


def test_unreachable_hub(env, monkeypatch):
    use_fake_hub(monkeypatch, "http://127.0.0.1:9", env / "hf")  # discard port: connection refused
    with pytest.raises(WeightsNotFound) as info:
        H.resolve("org/repo")
    msg = one_line(info)
    assert "could not be reached" in msg and "HF_HUB_OFFLINE" in msg


def test_sha256_mismatch_removes_the_cached_download(env, hub):
    with pytest.raises(InputError) as info:
        H.resolve("org/repo", filename="config.json", sha256=sha(b"something else"))
    msg = one_line(info)
    assert "does not match the expected sha256" in msg and "removed from the cache" in msg
    cache = env / "hf" / "hub"
    assert not [p for p in cache.rglob("config.json")]
    assert not [p for p in (cache / "models--org--repo" / "blobs").iterdir()]
    # The next run downloads it again.
    hub.reset_counts()
    path = H.resolve("org/repo", filename="config.json", sha256=sha(CONFIG))
    assert path.read_bytes() == CONFIG and hub.request_count >= 2


def test_private_repo_uses_hf_token(env, monkeypatch):
    with FakeHub(repos={"org/private": {"model.safetensors": b"secret"}}, token="hf_secret") as private:
        use_fake_hub(monkeypatch, private, env / "hf2")
        with pytest.raises(WeightsNotFound, match="HF_TOKEN"):
            H.resolve("org/private", filename="model.safetensors")
        monkeypatch.setenv("HF_TOKEN", "hf_secret")
        assert H.resolve("org/private", filename="model.safetensors").read_bytes() == b"secret"
        assert private.requests[-1].headers.get("authorization") == "Bearer hf_secret"


# ------------------------------------------------------------------------------------------
# Snapshots (folders)
# ------------------------------------------------------------------------------------------


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_snapshot_of_a_repo(env, hub, monkeypatch):
    folder = H.resolve("org/repo")
    assert folder.is_dir() and folder.parent.name == "snapshots"
    assert _files(folder) == {
        "model.safetensors",
        "config.json",
        "README.md",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    }  # no pytorch_model.bin
    assert (folder / "model.safetensors").read_bytes() == MODEL
    hub.reset_counts()
    assert H.resolve("org/repo") == folder
    go_offline(monkeypatch, env)
    assert H.resolve("org/repo") == folder
    assert H.resolve("hf://org/repo/unet/") == folder / "unet"
    assert hub.request_count == 0
    with pytest.raises(UsageError, match="folder"):
        H.resolve("org/repo", sha256=sha(MODEL))


def test_snapshot_after_single_file_is_complete(env):
    one = H.resolve("org/repo@v1", filename="config.json")
    folder = H.resolve("org/repo@v1")  # the snapshot folder exists already, but only partially
    assert folder == one.parent and _files(folder) == {"config.json", "model.safetensors"}


def test_snapshot_of_a_subfolder(env):
    unet = H.resolve("hf://org/repo/unet")
    assert unet.name == "unet" and _files(unet) == {"config.json", "diffusion_pytorch_model.safetensors"}
    assert not (unet.parent / "model.safetensors").exists()  # only that folder was fetched
    assert H.resolve("hf://org/repo/unet/", filename="config.json") == unet / "config.json"


# ------------------------------------------------------------------------------------------
# download_url
# ------------------------------------------------------------------------------------------


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_url_ok_then_cached(env, hub):
    dest = env / "gencli" / "cyclegan" / "horse2zebra.pth"
    assert H.download_url(hub.url("/releases/latest_net_G.pth"), dest, sha256=sha(PTH)) == dest
    assert dest.read_bytes() == PTH and _leftovers(dest.parent) == ["horse2zebra.pth"]
    hub.reset_counts()
    assert H.download_url(hub.url("/releases/latest_net_G.pth"), dest, sha256=sha(PTH)) == dest
    assert H.download_url(hub.url("/releases/latest_net_G.pth"), dest) == dest
    assert hub.request_count == 0
    dest.write_bytes(b"corrupted")  # a damaged cached copy is fetched again
    H.download_url(hub.url("/releases/latest_net_G.pth"), dest, sha256=sha(PTH))
    assert dest.read_bytes() == PTH and hub.request_count == 1


def test_download_url_checksum_mismatch_leaves_nothing(env, hub):
    dest = env / "dl" / "g.pth"
    with pytest.raises(InputError) as info:
        H.download_url(hub.url("/releases/latest_net_G.pth"), dest, sha256=sha(b"other"))
    assert "does not match the expected sha256" in one_line(info)
    assert not dest.exists() and _leftovers(dest.parent) == []


def test_download_url_failures(env, hub, monkeypatch):
    dest = env / "dl" / "g.pth"
    with pytest.raises(WeightsNotFound) as info:
        H.download_url(hub.url("/releases/missing.pth"), dest)
    assert "HTTP 404" in one_line(info) and str(dest) in str(info.value)
    with pytest.raises(WeightsNotFound) as info:
        H.download_url(hub.url("/releases/cut.pth"), dest)  # connection closed after 1000 bytes
    one_line(info)
    assert not dest.exists() and _leftovers(dest.parent) == []
    with pytest.raises(WeightsNotFound, match="check your connection"):
        H.download_url("http://127.0.0.1:9/x.pth", dest, timeout=5)

    hub.reset_counts()
    go_offline(monkeypatch, env)
    with pytest.raises(WeightsNotFound) as info:
        H.download_url(hub.url("/releases/latest_net_G.pth"), dest)
    assert "HF_HUB_OFFLINE" in one_line(info) and str(dest) in str(info.value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("GENCLI_OFFLINE", "1")
    with pytest.raises(WeightsNotFound, match="GENCLI_OFFLINE"):
        H.download_url(hub.url("/releases/latest_net_G.pth"), dest)
    assert hub.request_count == 0 and not dest.exists()
    assert not [p for p in os.listdir(env) if p.endswith((".part", ".tmp"))]
