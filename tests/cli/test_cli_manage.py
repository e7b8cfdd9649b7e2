"""gencli models / pull / convert."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from hubserver import FakeHub, use_fake_hub
from cli_support import _isolated, cli, png_size, tiny_uncond  # noqa: F401
from references import require


def test_models_json_lists_families_and_checkpoints(capsysbinary):
    r = cli(capsysbinary, "models", "--json")
    assert r.code == 0, r.err
    families = {f["name"]: f for f in json.loads(r.out)}
    ddpm = families["ddpm"]
    assert {"sample", "interpolate"} <= set(ddpm["capabilities"])
    assert ddpm["default_checkpoint"] == "fashion-mnist"
    names = {c["name"]: c for c in ddpm["checkpoints"]}
    assert names["cifar10"]["source"] == "hf:google/ddpm-cifar10-32" and names["cifar10"]["format"] == "diffusers"
    assert names["cifar10"]["available"] is False  # empty caches, and nothing was downloaded
    assert all(isinstance(c["available"], bool) for c in ddpm["checkpoints"])
    assert families["ddim"]["sample_defaults"] == {"sampler": "ddim", "steps": 50}


def test_models_table(capsysbinary):
    r = cli(capsysbinary, "models")
    assert r.code == 0, r.err
    text = r.out.decode()
    assert "ddpm" in text and "fashion-mnist" in text and "interpolate" in text


@pytest.fixture
def fake_hub(tiny_uncond, tmp_path, monkeypatch):
    data = Path(tiny_uncond).read_bytes()
    with FakeHub(repos={"org/tiny": {"model.safetensors": data, "README.md": b"# tiny"}}) as hub:
        use_fake_hub(monkeypatch, hub, tmp_path / "hf")
        yield hub, data


def test_pull_hub_refs_then_use_offline(capsysbinary, fake_hub, tmp_path, monkeypatch):
    hub, data = fake_hub
    r = cli(capsysbinary, "pull", "hf://org/tiny/model.safetensors")
    assert r.code == 0, r.err
    path = Path(r.out.decode().strip())
    assert path.is_file() and path.read_bytes() == data
    assert str(tmp_path / "hf") in str(path)

    r = cli(capsysbinary, "pull", "org/tiny", "--quiet")
    assert r.code == 0 and r.err == ""
    folder = Path(r.out.decode().strip())
    assert (folder / "model.safetensors").read_bytes() == data

    use_fake_hub(monkeypatch, None, tmp_path / "hf", offline=True)
    hub.reset_counts()
    r = cli(capsysbinary, "sample", "ddpm", "--weights", "org/tiny", "--steps", "2", "-n", "1", "-o", "-")
    assert r.code == 0, r.err
    assert png_size(r.out) == (8, 8) and hub.request_count == 0


def test_pull_errors(capsysbinary, fake_hub):
    cli(capsysbinary, "pull", "ddpm", "cifar10").assert_error(1, "google/ddpm-cifar10-32")
    cli(capsysbinary, "pull", "org/missing").assert_error(1, "org/missing")
    cli(capsysbinary, "pull", "nonsense").assert_error(2, "neither a model")
    cli(capsysbinary, "pull", "ddpm", "imagenet").assert_error(2, "no checkpoint named 'imagenet'")
    cli(capsysbinary, "pull", "org/tiny", "extra").assert_error(2, "takes no checkpoint name")


def test_convert_unknown_kind(capsysbinary):
    cli(capsysbinary, "convert", "onnx", "x", "-o", "y.safetensors").assert_error(2, "unknown converter 'onnx'; known:",
                                                                                  "diffusers")


def _fake_convert(src, out, *, force=False):
    Path(out).write_text(f"{src} {force}")
    return Path(out)


def test_convert_dispatch(capsysbinary, monkeypatch):
    from gencli.cli import manage

    monkeypatch.setitem(manage.CONVERTERS, "fake", "test_cli_manage:_fake_convert")
    monkeypatch.setitem(manage.CONVERTERS, "absent", "gencli.convert.no_such_module:convert")
    r = cli(capsysbinary, "convert", "fake", "src.bin", "-o", "out.safetensors")
    assert r.code == 0 and Path("out.safetensors").read_text() == "src.bin False"
    assert r.err_lines == ["wrote out.safetensors; use it with: --weights out.safetensors"]
    cli(capsysbinary, "convert", "fake", "src.bin", "-o", "out.safetensors").assert_error(2, "exists; pass --force")
    assert cli(capsysbinary, "convert", "fake", "s2", "-o", "out.safetensors", "-f").code == 0
    assert Path("out.safetensors").read_text() == "s2 True"
    cli(capsysbinary, "convert", "absent", "x", "-o", "y.safetensors").assert_error(1, "not available in this build")


def _converter_or_skip():
    try:
        module = importlib.import_module("gencli.convert.diffusers")
    except ImportError:
        pytest.skip("gencli.convert.diffusers is not in this build yet")
    if not callable(getattr(module, "convert", None)):
        pytest.skip("gencli.convert.diffusers has no convert() yet")
    require("diffusers")


def test_convert_diffusers_folder(capsysbinary, tmp_path):
    _converter_or_skip()
    import torch
    from safetensors.torch import save_file

    from gencli.checkpoints import read_metadata
    from gencli.models.diffusion.ddpm import DiffusionModel
    from cli_support import TINY_OVERRIDES

    model = DiffusionModel.from_config(DiffusionModel.config_for_data(8, 1, None, TINY_OVERRIDES))
    src = tmp_path / "diffusers-unet"
    src.mkdir()
    save_file({k: v.contiguous() for k, v in model.unet.state_dict().items()},
              str(src / "diffusion_pytorch_model.safetensors"))
    unet_cfg = {k: v for k, v in model.config["unet"].items() if k != "num_class_embeds"}
    (src / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", **unet_cfg}))
    (src / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "DDPMScheduler", "num_train_timesteps": 100, "beta_schedule": "linear",
         "beta_start": 1e-4, "beta_end": 0.02, "variance_type": "fixed_small", "clip_sample": True}))

    r = cli(capsysbinary, "convert", "diffusers", src, "-o", "conv.safetensors")
    assert r.code == 0, r.err
    assert read_metadata("conv.safetensors")["family"] == "ddpm"
    cli(capsysbinary, "convert", "diffusers", src, "-o", "conv.safetensors").assert_error(2, "exists")
    r = cli(capsysbinary, "sample", "ddpm", "--weights", "conv.safetensors", "--steps", "2", "-n", "1", "-o", "-")
    assert r.code == 0 and png_size(r.out) == (8, 8)
    assert torch is not None


def test_pull_metric_network_from_the_hub(capsysbinary, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no pytorch-fid .pth to fall back on
    payload = b"fid inception weights"
    with FakeHub(repos={"gencli/fid-inception": {"fid_inception.safetensors": payload}}) as hub:
        use_fake_hub(monkeypatch, hub, tmp_path / "hf")
        r = cli(capsysbinary, "pull", "fid-inception")
        assert r.code == 0, r.err
        assert Path(r.out.decode().strip()).read_bytes() == payload
        cli(capsysbinary, "pull", "fid-inception", "x").assert_error(2, "no named checkpoints")
    use_fake_hub(monkeypatch, None, tmp_path / "hf2", offline=True)
    cli(capsysbinary, "pull", "vgg16").assert_error(1, "gencli convert vgg16")
