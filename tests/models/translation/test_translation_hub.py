"""Named official CycleGAN/pix2pix checkpoints: downloaded from (a local stand-in for) the
official site, verified, converted once into gencli's cache, then used offline."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import warnings

import pytest
import torch

from gencli import registry
from gencli.convert.official_download import MIRROR_ENV, converted_path
from gencli.errors import InputError, WeightsNotFound
from hubserver import FakeHub, use_fake_hub
from translation_support import official_resnet_sd, official_unet_sd


def pth_bytes(sd) -> bytes:
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.getvalue()


H2Z = pth_bytes(official_resnet_sd(ngf=4, n_blocks=2, legacy="0.4", seed=7))
E2S = pth_bytes(official_unet_sd(ngf=2, num_downs=8, seed=8))
FILES = {
    "/cyclegan/pretrained_models/horse2zebra.pth": H2Z,
    "/cyclegan/pretrained_models/zebra2horse.pth": b"<html>moved</html>",
    "/pix2pix/models-pytorch/edges2shoes.pth": E2S,
}


@pytest.fixture(scope="module")
def site():
    with FakeHub(files=FILES) as server:
        yield server


@pytest.fixture
def env(site, tmp_path, monkeypatch):
    monkeypatch.setenv("GENCLI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(MIRROR_ENV, site.endpoint)
    use_fake_hub(monkeypatch, site, tmp_path / "hf")  # online (also resets huggingface_hub's cached flag)
    site.reset_counts()
    return tmp_path


def test_registry_knows_the_official_names():
    cg = registry.get_family("cyclegan")
    names = {r.name for r in cg.checkpoints}
    assert {"horse2zebra", "zebra2horse", "monet2photo", "style_monet", "style_cezanne", "style_ukiyoe",
            "style_vangogh", "summer2winter_yosemite", "winter2summer_yosemite", "apple2orange",
            "orange2apple", "map2sat", "sat2map", "cityscapes_photo2label", "cityscapes_label2photo",
            "facades_photo2label", "facades_label2photo", "iphone2dslr_flower", "sneaker2boot"} == names
    ref = cg.checkpoint("horse2zebra")
    assert ref.source == "url:http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/horse2zebra.pth"
    assert ref.format == "cyclegan-pth"
    p2p = registry.get_family("pix2pix")
    assert {r.name for r in p2p.checkpoints} == {"edges2shoes", "sat2map", "map2sat", "facades_label2photo",
                                                 "day2night", "edges2fashion"}
    assert p2p.checkpoint("day2night").source.endswith("/pix2pix/models-pytorch/day2night.pth")
    assert registry.families_with("translate") == ["cyclegan", "pix2pix"] or \
        {"cyclegan", "pix2pix"} <= set(registry.families_with("translate"))


def test_download_convert_once_then_offline(env, site, monkeypatch):
    with pytest.warns(UserWarning, match=r"downloaded http://127\.0\.0\.1.*horse2zebra\.pth \(not pinned yet: "
                                         r"sha256 [0-9a-f]{64}\) and converted it once into .*horse2zebra"):
        model, meta = registry.load_model("cyclegan", "horse2zebra")
    assert site.request_count == 1
    dest = converted_path("cyclegan", "horse2zebra")
    assert dest.is_file() and dest.parent == env / "cache" / "converted" / "cyclegan"
    assert not list((env / "cache" / "downloads").rglob("*.pth"))  # the .pth is not kept
    assert meta["source_sha256"] == [hashlib.sha256(H2Z).hexdigest()]
    assert meta["source"].endswith("/cyclegan/pretrained_models/horse2zebra.pth")
    assert model.config["domains"] == {"A": "horse", "B": "zebra"}
    x = torch.rand(1, 3, 20, 20) * 2 - 1
    y = model.translate(x)
    assert y.shape == x.shape
    # second use: no request at all, even offline
    site.reset_counts()
    monkeypatch.setenv("GENCLI_OFFLINE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again, _ = registry.load_model("cyclegan", "horse2zebra")
    assert site.request_count == 0
    assert torch.equal(again.translate(x), y)


def test_pix2pix_named_checkpoint(env, site):
    with pytest.warns(UserWarning, match="converted it once"):
        model, meta = registry.load_model("pix2pix", "edges2shoes")
    assert model.config["generator"]["num_downs"] == 8 and model.config["inference"]["dropout"] is True
    x = torch.rand(1, 3, 16, 24) * 2 - 1
    a = model.translate(x)
    assert a.shape == x.shape
    assert torch.equal(a, model.translate(x))  # test-time dropout is seeded
    g = torch.Generator().manual_seed(1)
    assert not torch.equal(a, model.translate(x, generator=g))


def test_offline_or_missing_says_what_to_do(env, site, monkeypatch):
    monkeypatch.setenv("GENCLI_OFFLINE", "1")
    with pytest.raises(WeightsNotFound, match="downloads are off"):
        registry.load_model("cyclegan", "horse2zebra")
    monkeypatch.delenv("GENCLI_OFFLINE")
    with pytest.raises(WeightsNotFound, match="not in the cache"):
        registry.load_model("cyclegan", "horse2zebra", allow_download=False)
    with pytest.raises(WeightsNotFound, match="HTTP 404"):
        registry.load_model("cyclegan", "apple2orange")
    assert site.request_count == 1


def test_a_bad_download_is_not_kept(env, site):
    with pytest.raises(InputError, match="not a usable cyclegan generator.*removed"):
        registry.load_model("cyclegan", "zebra2horse")
    assert not converted_path("cyclegan", "zebra2horse").exists()
    assert not list((env / "cache").rglob("*.pth"))


def test_pinned_checksum_is_verified(env, site, monkeypatch):
    spec = registry.get_family("cyclegan")
    bad = tuple(dataclasses.replace(r, sha256="0" * 64) if r.name == "horse2zebra" else r for r in spec.checkpoints)
    monkeypatch.setitem(registry.FAMILIES, "cyclegan", dataclasses.replace(spec, checkpoints=bad))
    with pytest.raises(InputError, match="does not match the expected sha256"):
        registry.load_model("cyclegan", "horse2zebra")
    assert not converted_path("cyclegan", "horse2zebra").exists()
    good = tuple(dataclasses.replace(r, sha256=hashlib.sha256(H2Z).hexdigest()) if r.name == "horse2zebra" else r
                 for r in spec.checkpoints)
    monkeypatch.setitem(registry.FAMILIES, "cyclegan", dataclasses.replace(spec, checkpoints=good))
    with pytest.warns(UserWarning) as rec:
        registry.load_model("cyclegan", "horse2zebra")
    assert "not pinned" not in str(rec[0].message)
