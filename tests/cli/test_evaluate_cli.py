"""`gencli evaluate`: inputs, metrics, caching, output formats and every bad input's one-line error.

The FID Inception here has random weights (the real ones cannot be downloaded in tests); most
tests use ``--dims 64`` (only the first three convolutions run) to stay fast on 2 busy cores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from cli_support import _isolated, cli, make_tiny_checkpoint  # noqa: F401
from references import require

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    from gencli.convert.fid_inception import convert_fid_inception
    from gencli.metrics.testing import random_inception_state, save_pth

    d = tmp_path_factory.mktemp("inception")
    pth = save_pth(random_inception_state(0), d / "random-fixture-inception.pth")
    return convert_fid_inception(pth, d / "fid_inception.safetensors")


def _write_pngs(folder: Path, n: int, seed: int, size: int = 16, mode: str = "RGB", offset: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        arr = np.clip(arr.astype(int) + offset, 0, 255).astype(np.uint8)
        Image.fromarray(arr).convert(mode).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture
def two_folders(tmp_path):
    return _write_pngs(tmp_path / "real", 6, 0), _write_pngs(tmp_path / "fake", 5, 1, offset=60)


def _json(r) -> dict:
    assert r.code == 0, r.err
    return json.loads(r.out.decode())


def _fid64(capsysbinary, a, b, weights, *extra):
    return _json(cli(capsysbinary, "evaluate", "fid", a, b, "--weights", weights, "--dims", "64", "--json", *extra))


# --- FID, statistics, cache --------------------------------------------------------------------
def test_fid_matches_an_independent_computation(capsysbinary, two_folders, weights):
    """Our unfused features + np.cov + the exact nuclear-norm value (and scipy's sqrtm when present)."""
    import torch
    import torch.nn.functional as F

    from gencli.metrics.inception import load_inception

    res = _fid64(capsysbinary, *two_folders, weights)
    assert res["metric"] == "fid" and res["dims"] == 64 and res["preprocess"] == "pytorch-fid"
    assert [i["n"] for i in res["inputs"]] == [6, 5]
    model = load_inception(weights, fuse=False)
    stats, acts = [], []
    for folder in two_folders:
        files = sorted(folder.glob("*.png"))
        x = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1)
                         for f in files]).float() / 255
        x = 2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
        with torch.inference_mode():
            act = model(x, ["64"])["64"].double().numpy()
        stats.append((act.mean(0), np.cov(act, rowvar=False)))
        acts.append(act - act.mean(0))
    (m1, s1), (m2, s2) = stats
    # exact for these rank-deficient covariances (6 and 5 images, 64-d): tr sqrt(S1 S2) is the
    # nuclear norm of A1 A2^T / sqrt((n1-1)(n2-1)) for the centred features A_i; no scipy needed
    a1, a2 = acts
    tr = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / np.sqrt((len(a1) - 1) * (len(a2) - 1))
    exact = (m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * tr
    # gencli runs the BN-folded network: float32 rounding differs from the unfused one (2e-8 measured)
    assert res["fid"] == pytest.approx(exact, rel=1e-6)
    # and scipy's sqrtm, the way pytorch-fid computes it (inexact itself on rank-5 input)
    linalg = require("scipy.linalg")
    covmean = np.real(linalg.sqrtm(s1 @ s2))
    ref = (m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert res["fid"] == pytest.approx(ref, rel=1e-3)
    assert "only 6 images for 64-d features" in cli(capsysbinary, "evaluate", "fid", *two_folders, "--weights",
                                                     weights, "--dims", "64").err


def test_values_on_stdout_and_a_table_on_stderr(capsysbinary, two_folders, weights):
    r = cli(capsysbinary, "evaluate", "fid", *two_folders, "--weights", weights, "--dims", "64")
    assert r.code == 0, r.err
    lines = r.out.decode().splitlines()  # `gencli evaluate fid a/ b/ > fid.txt` keeps the number
    assert len(lines) == 1 and lines[0].startswith("fid: ")
    js = _json(cli(capsysbinary, "evaluate", "fid", *two_folders, "--weights", weights, "--dims", "64", "--json"))
    assert float(lines[0].split(": ")[1]) == js["fid"]
    assert "FID" in r.err and "input A" in r.err and "input B" in r.err
    q = cli(capsysbinary, "evaluate", "fid", *two_folders, "--weights", weights, "--dims", "64", "-q")
    assert q.out == r.out and "input A" not in q.err  # -q: no table (warnings still show)


def test_save_stats_and_npz_input(capsysbinary, two_folders, weights, tmp_path):
    real, fake = two_folders
    out = tmp_path / "real.npz"
    res = _json(cli(capsysbinary, "evaluate", "fid", real, "--weights", weights, "--dims", "64",
                    "--save-stats", out, "--json"))
    assert res["saved_stats"] == str(out) and res["n"] == 6
    with np.load(out) as data:  # pytorch-fid layout
        assert data["mu"].shape == (64,) and data["sigma"].shape == (64, 64)
    direct = _fid64(capsysbinary, real, fake, weights, "--no-cache")["fid"]
    via_npz = _fid64(capsysbinary, out, fake, weights, "--no-cache")["fid"]
    # the images' side keeps its feature rows (6 <= 64 dims: FeatureStats.root), the npz side has
    # only mean and covariance: the same trace by another factorisation, equal to rounding (seen
    # 1e-10 to 2e-8 apart relative to this small FID: its terms cancel; 6 images in 64-d are rank 5)
    assert via_npz == pytest.approx(direct, rel=1e-6)
    # exists -> refuse, --force -> overwrite
    r = cli(capsysbinary, "evaluate", "fid", real, "--weights", weights, "--dims", "64", "--save-stats", out)
    r.assert_error(2, "exists", "--force")
    # a pytorch-fid file written by numpy directly
    np.savez(tmp_path / "pf.npz", mu=np.zeros(64, np.float32), sigma=np.eye(64, dtype=np.float32))
    assert _fid64(capsysbinary, tmp_path / "pf.npz", fake, weights)["fid"] > 0
    # dims mismatch
    r = cli(capsysbinary, "evaluate", "fid", out, fake, "--weights", weights, "--dims", "192")
    r.assert_error(1, "64-d statistics", "192-d")


def test_stats_cache_is_keyed_by_content(capsysbinary, two_folders, weights, tmp_path):
    real, fake = two_folders
    first = _fid64(capsysbinary, real, fake, weights)
    assert [i["cached"] for i in first["inputs"]] == [False, False]
    moved = tmp_path / "moved"
    shutil.copytree(real, moved)
    second = _fid64(capsysbinary, moved, fake, weights)
    assert [i["cached"] for i in second["inputs"]] == [True, True]
    assert second["fid"] == first["fid"]
    _write_pngs(moved, 1, 99)  # overwrite 000.png with other pixels
    third = _fid64(capsysbinary, moved, fake, weights)
    assert third["inputs"][0]["cached"] is False and third["fid"] != first["fid"]
    # a different preprocessing is a different cache entry
    tf = _fid64(capsysbinary, real, fake, weights, "--preprocess", "tf")
    assert tf["inputs"][0]["cached"] is False and tf["preprocess"] == "tf"
    assert not _fid64(capsysbinary, real, fake, weights, "--no-cache")["inputs"][0]["cached"]


def test_glob_inputs(capsysbinary, two_folders, weights):
    real, fake = two_folders
    res = _fid64(capsysbinary, str(real / "*.png"), str(fake / "00[0-3].png"), weights)
    assert [i["n"] for i in res["inputs"]] == [6, 4]


# --- bad input ---------------------------------------------------------------------------------
def test_mixed_sizes_and_modes(capsysbinary, tmp_path, weights):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(mixed / "a_rgb.png")
    Image.fromarray(rgb[:, :, 0]).save(mixed / "b_grey.png")
    Image.fromarray(np.dstack([rgb, rgb[:, :, :1]])).save(mixed / "c_rgba.png")
    Image.fromarray(rgb).convert("P").save(mixed / "d_palette.png")
    Image.fromarray((rng.integers(0, 65535, size=(12, 9))).astype(np.uint16)).save(mixed / "e_16bit.png")
    Image.fromarray(rgb).convert("CMYK").save(mixed / "f_cmyk.jpg")
    Image.fromarray(rgb[:7, :11]).save(mixed / "G_UPPER.PNG")
    res = _fid64(capsysbinary, mixed, mixed, weights)
    assert res["inputs"][0]["n"] == 7
    assert res["fid"] == pytest.approx(0.0, abs=1e-6)


def test_corrupt_file_fails_naming_it_or_is_skipped(capsysbinary, two_folders, weights):
    real, fake = two_folders
    (real / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    r = cli(capsysbinary, "evaluate", "fid", real, fake, "--weights", weights, "--dims", "64")
    r.assert_error(1, "zz_broken.png", "--skip-bad")
    r = cli(capsysbinary, "evaluate", "fid", real, fake, "--weights", weights, "--dims", "64", "--skip-bad", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["inputs"][0]["n"] == 6
    assert "warning: skipping" in r.err and "zz_broken.png" in r.err


@pytest.mark.parametrize("case", ["empty", "one", "npz", "missing", "notimages"])
def test_bad_inputs_are_one_line_exit_1(capsysbinary, tmp_path, weights, two_folders, case):
    real, _ = two_folders
    if case == "empty":
        (tmp_path / "empty").mkdir()
        arg, needle = tmp_path / "empty", "contains no images"
    elif case == "one":
        arg, needle = _write_pngs(tmp_path / "one", 1, 5), "at least 2 images"
    elif case == "npz":
        np.savez(tmp_path / "bad.npz", mean=np.zeros(3))
        arg, needle = tmp_path / "bad.npz", "no mu, sigma"
    elif case == "missing":
        arg, needle = tmp_path / "nope", "no such file or folder"
    else:
        d = tmp_path / "txt"
        d.mkdir()
        (d / "a.png").write_text("hello")
        (d / "b.png").write_text("world")
        arg, needle = d, "a.png"
    r = cli(capsysbinary, "evaluate", "fid", arg, real, "--weights", weights, "--dims", "64")
    r.assert_error(1, needle)


def test_wrong_weights_are_one_line(capsysbinary, two_folders, tmp_path):
    import torch

    from gencli.checkpoints import save_checkpoint

    ddpm = save_checkpoint(tmp_path / "ddpm.safetensors", {"w": torch.zeros(3)}, {"family": "ddpm"})
    r = cli(capsysbinary, "evaluate", "fid", *two_folders, "--weights", ddpm)
    r.assert_error(1, "ddpm checkpoint", "not the FID Inception")
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "resnet.pth")
    r = cli(capsysbinary, "evaluate", "fid", *two_folders, "--weights", tmp_path / "resnet.pth")
    r.assert_error(1, "resnet.pth", "is not the FID InceptionV3 network")


def test_offline_without_weights(capsysbinary, two_folders, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    r = cli(capsysbinary, "evaluate", "fid", *two_folders)
    r.assert_error(1, "gencli pull fid-inception", "gencli convert fid-inception", "--weights",
                   "--features fmnist")


@pytest.mark.parametrize("args, needle", [
    (["fid", "A"], "compares two inputs"),
    (["kid", "A"], "compares two inputs"),
    (["is", "A", "B"], "takes one input"),
    (["fid", "A", "B", "C"], "at most two"),
    (["fid", "A", "B", "--save-stats", "x.npz"], "exactly one"),
    (["kid", "A", "--save-stats", "x.npz"], "--save-stats writes FID"),
    (["fid", "A", "--save-stats", "x.txt"], ".npz"),
    (["fod", "A", "B"], "METRIC must be one of"),
    (["fid", "A", "B", "--preprocess", "cubic"], "--preprocess"),
    (["fid", "A", "B", "--features", "clip"], "--features"),
    (["fid", "A", "B", "--features", "fmnist", "--dims", "64"], "--dims"),
    (["fid", "A", "--model", "ddpm", "B"], "only A"),
    (["fid", "A", "B", "--steps", "10"], "--model"),
    (["kid", "A", "B", "--kid-subset-size", "1"], "--kid-subset-size"),
])
def test_usage_errors_exit_2(capsysbinary, args, needle):
    r = cli(capsysbinary, "evaluate", *args)
    r.assert_error(2, needle)


def test_npz_cannot_feed_kid(capsysbinary, two_folders, weights, tmp_path):
    np.savez(tmp_path / "s.npz", mu=np.zeros(64), sigma=np.eye(64))
    r = cli(capsysbinary, "evaluate", "kid", tmp_path / "s.npz", two_folders[1], "--weights", weights,
            "--dims", "64")
    r.assert_error(2, "need images")


# --- the other metrics (Inception) ---------------------------------------------------------------
def test_kid_with_small_sets(capsysbinary, two_folders, weights):
    r = cli(capsysbinary, "evaluate", "kid", *two_folders, "--weights", weights, "--dims", "64", "--json",
            "--kid-subsets", "5")
    res = _json(r)
    assert res["kid_subset_size"] == 5 and res["kid_subsets"] == 5 and np.isfinite(res["kid_mean"])
    assert "subset size reduced from 1000 to 5" in r.err


# --- --features fmnist (the bundled classifier) --------------------------------------------------
def _bundled_classifier() -> Path:
    from gencli.metrics.fmnist_classifier import WEIGHTS_FILE
    from gencli.paths import bundled_weights_dir

    return bundled_weights_dir() / WEIGHTS_FILE


needs_fmnist = pytest.mark.skipif(not (FMNIST_DIR.is_dir() and _bundled_classifier().is_file()),
                                  reason="Fashion-MNIST or the bundled classifier is absent")


@pytest.fixture(scope="module")
def fmnist_folders(tmp_path_factory):
    from gencli.io.named_datasets import load_fashion_mnist

    test = load_fashion_mnist("test")
    root = tmp_path_factory.mktemp("fmnist")
    folders = []
    for name, lo in (("a", 0), ("b", 150)):
        d = root / name
        d.mkdir()
        for i in range(lo, lo + 150):
            Image.fromarray(test.images[i, 0].numpy()).save(d / f"{i:05d}.png")
        folders.append(d)
    return folders


@needs_fmnist
def test_fmnist_all_metrics_offline(capsysbinary, fmnist_folders, monkeypatch):
    monkeypatch.setenv("GENCLI_OFFLINE", "1")
    a, b = fmnist_folders
    res = _json(cli(capsysbinary, "evaluate", "all", a, b, "--features", "fmnist", "--json"))
    assert res["features"] == {"fid": "fmnist", "kid": "fmnist", "is": "fmnist", "pr": "fmnist"}
    # every metric against its definition, computed here in numpy from the classifier's own
    # features/logits of the PNGs (no gencli metric code): FID exactly (nuclear norm), KID (the
    # 150-image subsets are whole sets, so every subset's unbiased MMD^2 is the full one), IS
    # (torch-fidelity's seeded split of the second input), precision/recall (k=3 balls)
    import torch

    from gencli.metrics.fmnist_classifier import load_classifier

    model = load_classifier()
    feats, logits = [], []
    for folder in (a, b):
        u8 = np.stack([np.array(Image.open(f)) for f in sorted(folder.glob("*.png"))])
        with torch.inference_mode():
            f, z = model.features_and_logits(torch.from_numpy(u8).float()[:, None] / 127.5 - 1)
        feats.append(f.double().numpy())
        logits.append(z.double().numpy())
    (f1, f2), n = feats, 150
    c1, c2 = f1 - f1.mean(0), f2 - f2.mean(0)
    tr = np.linalg.svd(c1 @ c2.T, compute_uv=False).sum() / (n - 1)
    fid = ((f1.mean(0) - f2.mean(0)) ** 2).sum() + (c1 ** 2).sum() / (n - 1) + (c2 ** 2).sum() / (n - 1) - 2 * tr
    assert res["fid"] == pytest.approx(fid, rel=1e-5)
    k = lambda x, y: (x @ y.T / x.shape[1] + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(f1, f1), k(f2, f2), k(f1, f2)
    mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (n * (n - 1)) - 2 * kxy.mean()
    assert res["kid_mean"] == pytest.approx(mmd, rel=1e-4, abs=1e-9) and res["kid_std"] == pytest.approx(0, abs=1e-9)
    z = logits[1][np.random.RandomState(2020).permutation(n)]  # IS is of the second input
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scores = [np.exp((q * (np.log(q) - np.log(q.mean(0)))).sum(1).mean()) for q in
              (p[i * n // 10:(i + 1) * n // 10] for i in range(10))]
    assert res["is_mean"] == pytest.approx(np.mean(scores), rel=1e-5)
    assert res["is_std"] == pytest.approx(np.std(scores), rel=1e-3, abs=1e-6)
    dist = lambda x, y: np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))  # noqa: E731
    r1, r2 = np.sort(dist(f1, f1), 1)[:, 3], np.sort(dist(f2, f2), 1)[:, 3]  # 0th is the point itself
    assert res["precision"] == pytest.approx((dist(f2, f1) <= r1[None]).any(1).mean(), abs=1e-9)
    assert res["recall"] == pytest.approx((dist(f1, f2) <= r2[None]).any(1).mean(), abs=1e-9)
    # images shifted by 3 pixels are further away than another sample of the same test set
    shifted = b.parent / "b_shifted"
    shifted.mkdir(exist_ok=True)
    for f in sorted(b.glob("*.png")):
        Image.fromarray(np.roll(np.array(Image.open(f)), 3, axis=1)).save(shifted / f.name)
    far = _json(cli(capsysbinary, "evaluate", "fid", a, shifted, "--features", "fmnist", "--json"))["fid"]
    assert far > 2 * res["fid"], (far, res["fid"])
    res_same = _json(cli(capsysbinary, "evaluate", "fid", a, "fashion-mnist:test", "--features", "fmnist", "--json"))
    assert res_same["inputs"][1]["n"] == 10000 and res_same["fid"] < far


@needs_fmnist
def test_fmnist_dataset_cache_and_inverted_images(capsysbinary, fmnist_folders, tmp_path):
    a, _ = fmnist_folders
    inv = tmp_path / "inv"
    inv.mkdir()
    for f in sorted(a.glob("*.png"))[:50]:
        Image.eval(Image.open(f), lambda v: 255 - v).save(inv / f.name)
    far = _json(cli(capsysbinary, "evaluate", "fid", a, inv, "--features", "fmnist", "--json"))["fid"]
    near = _json(cli(capsysbinary, "evaluate", "fid", a, a, "--features", "fmnist", "--json"))["fid"]
    assert near == pytest.approx(0.0, abs=1e-6) and far > 10


@needs_fmnist
def test_fmnist_model_samples(capsysbinary, tmp_path):
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.safetensors", num_classes=None, size=28)
    res = _json(cli(capsysbinary, "evaluate", "is", "--model", "ddpm", "--model-weights", ckpt, "-n", "20",
                    "--steps", "2", "--features", "fmnist", "--splits", "2", "--json"))
    assert res["inputs"][0]["kind"] == "samples" and res["inputs"][0]["n"] == 20
    again = _json(cli(capsysbinary, "evaluate", "is", "--model", "ddpm", "--model-weights", ckpt, "-n", "20",
                      "--steps", "2", "--features", "fmnist", "--splits", "2", "--json"))
    assert again["is_mean"] == res["is_mean"]  # seeded


def test_json_mode_prints_no_table(capsysbinary, two_folders, weights):
    r = cli(capsysbinary, "evaluate", "fid", *two_folders, "--weights", weights, "--dims", "64", "--json")
    assert r.code == 0 and "input A" not in r.err
    assert set(json.loads(r.out)) >= {"metric", "fid", "features", "inputs", "seed", "device", "seconds",
                                      "preprocess", "dims"}
