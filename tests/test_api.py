"""The Python API (README "Python API") is what the commands run: same images, same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_support import _isolated, cli, make_tiny_checkpoint  # noqa: F401

import gencli
from gencli.errors import CapabilityError, UsageError


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("api") / "tiny.safetensors")


def _png_pixels(path: Path) -> torch.Tensor:
    from gencli.io.images import load_image

    return load_image(str(path), channels=None)


def test_generate_is_gencli_sample(capsysbinary, ckpt, tmp_path):
    model = gencli.load("ddpm", str(ckpt))
    assert model.spec.name == "ddpm" and model.metadata["source"].endswith("tiny.safetensors")
    x = model.generate(5, seed=3, batch_size=2, steps=3, sampler="ddim")
    assert x.shape == (5, 1, 8, 8)
    r = cli(capsysbinary, "sample", "ddpm", "--weights", ckpt, "-n", "5", "--seed", "3", "-b", "2",
            "--steps", "3", "--sampler", "ddim", "-o", "out/")
    assert r.code == 0, r.err
    for i in range(5):  # the files are the 8-bit rounding of the same tensors
        png = _png_pixels(tmp_path / "out" / f"{i:06d}.png")
        assert (png - x[i]).abs().max() <= 1 / 127.5 + 1e-6


def test_presets_and_options_are_the_specs(ckpt):
    ddim = gencli.load("ddim", str(ckpt))
    a = ddim.generate(2, seed=1)  # the preset: sampler ddim, 50 steps
    b = gencli.load("ddpm", str(ckpt)).generate(2, seed=1, sampler="ddim", steps=50)
    assert torch.equal(a, b)
    with pytest.raises(UsageError, match="no option --truncation"):
        ddim.generate(1, truncation=0.5)
    with pytest.raises(UsageError, match="--eta must be at most 1"):
        ddim.generate(1, eta=2.0)


def test_translate_and_capabilities(ckpt):
    model = gencli.load("ddpm", str(ckpt))
    with pytest.raises(CapabilityError, match="ddpm cannot translate"):
        gencli.translate(model, torch.zeros(1, 1, 8, 8))
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    y = gencli.translate("cyclegan", x)  # the bundled sneaker2boot
    assert y.shape == x.shape
    listed = gencli.translate("cyclegan", list(x))  # a list in, a list out (sizes may differ)
    assert isinstance(listed, list) and torch.equal(torch.stack(listed), y)
    with pytest.raises(UsageError, match="--direction must be one of"):
        gencli.translate("cyclegan", x, direction="sideways")


def test_evaluate_is_the_json_of_gencli_evaluate(capsysbinary, tmp_path):
    from PIL import Image

    for name, value in (("a", 30), ("b", 200)):
        (tmp_path / name).mkdir()
        for i in range(4):
            Image.new("L", (28, 28), value + 5 * i).save(tmp_path / name / f"{i}.png")
    ours = gencli.evaluate("fid", tmp_path / "a", tmp_path / "b", features="fmnist", no_cache=True)
    r = cli(capsysbinary, "evaluate", "fid", "a", "b", "--features", "fmnist", "--no-cache", "--json")
    assert r.code == 0, r.err
    theirs = json.loads(r.out)
    assert ours["fid"] == theirs["fid"] and ours["features"] == "fmnist"


def test_translate_batch_size_is_chosen_by_device_and_image_size(monkeypatch):
    from gencli import api

    assert api.auto_batch_size("cpu", (3, 256, 256)) == 1  # measured slower batched on 2 cores
    assert api.auto_batch_size("cpu", (3, 128, 128)) == 4
    assert api.auto_batch_size("cpu", (1, 28, 28)) == 16
    assert api.auto_batch_size("cpu", (3, 1024, 1024)) == 1
    assert api.auto_batch_size("cuda", (3, 256, 256)) == 16
    seen = []
    model = gencli.load("cyclegan")
    real = model.translate

    def spy(x, **kw):
        seen.append(x.shape[0])
        return real(x, **kw)

    monkeypatch.setattr(model, "translate", spy)
    images = [torch.zeros(1, 64, 64)] * 3 + [torch.zeros(1, 128, 128)] * 5 + [torch.zeros(1, 28, 28)] * 18
    out = gencli.translate(model, images)
    assert len(out) == len(images)
    assert seen == [3, 4, 1, 16, 2]  # a new size starts a new batch; each size its own cap
    seen.clear()
    gencli.translate(model, images, batch_size=2)
    assert seen == [2, 1, 2, 2, 1] + [2] * 9


def test_translate_fast_path_matches_the_plain_forward():
    model = gencli.load("cyclegan")
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    fast, plain = model.translate(x), model.translate(x, fast=False)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-4)
    assert model.generator_for(None)[0]._fast_kept is not None  # kept for the next batch
