"""gencli against diffusers itself: diffusers folders load through the registry and give the same
network outputs and the same DDPM/DDIM samples (skipped when diffusers is not installed;
an error under CI or GENCLI_REQUIRE_ANCHORS=1)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from references import require

diffusers = require("diffusers", module_level=True)

from gencli import registry  # noqa: E402
from gencli.convert.diffusers import convert, load_diffusers  # noqa: E402
from gencli.errors import InputError  # noqa: E402
from gencli.models.diffusion.unet import DDPM_CIFAR10_CONFIG  # noqa: E402
from hubserver import FakeHub, use_fake_hub  # noqa: E402
from tiny import randomize  # noqa: E402

CIFAR10 = DDPM_CIFAR10_CONFIG  # google/ddpm-cifar10-32 (its config.json; weights are random here)
# The same architecture family, small enough for sampling loops in a test.
SMALL = {
    "sample_size": 16, "in_channels": 3, "out_channels": 3,
    "block_out_channels": [32, 64], "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": None, "flip_sin_to_cos": False, "freq_shift": 1, "norm_eps": 1e-6,
    "norm_num_groups": 8, "downsample_padding": 0,
}
DDPM_CONFIG = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
               "clip_sample": True, "variance_type": "fixed_large"}


def random_unet(config: dict, seed: int = 0, **over) -> diffusers.UNet2DModel:
    """A diffusers UNet2DModel with every parameter random (many are zero-initialised)."""
    torch.manual_seed(seed)
    return randomize(diffusers.UNet2DModel(**{**config, **over}), seed).eval()


def save_pipeline(unet: diffusers.UNet2DModel, folder: Path) -> Path:
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(**DDPM_CONFIG)).save_pretrained(folder)
    return folder


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def inputs(unet, n=2, seed=3):
    size = unet.config.sample_size
    return torch.randn(n, unet.config.in_channels, size, size, generator=gen(seed)), torch.tensor([999, 17][:n])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    unet = random_unet(SMALL)
    return unet, save_pipeline(unet, tmp_path_factory.mktemp("small") / "pipe")


# --- (a) the network ------------------------------------------------------------------------
def test_cifar10_forward_matches_diffusers(tmp_path):
    unet = random_unet(CIFAR10)
    save_pipeline(unet, tmp_path / "pipe")
    model, meta = registry.load_model("ddpm", weights=str(tmp_path / "pipe"))
    assert meta["source_format"] == "diffusers" and model.image_size == 32 and model.channels == 3
    assert model.config["sampling"] == {"sampler": "ddpm", "steps": 1000, "spacing": "leading", "eta": 0.0,
                                        "guidance": 1.0}
    assert model.schedule.variance_type == "fixed_large" and model.schedule.clip_sample
    x, t = inputs(unet)
    with torch.inference_mode():
        want = unet(x, t).sample
        got = model.unet(x, t)
        assert (got - want).abs().max() < 1e-4
        with model.unet.fast_inference():  # channels_last + Winograd F(4x4, 3x3)
            fast = model.unet(x, t)
    assert (fast - want).abs().max() < 1e-4


# --- (b), (c) the samplers ------------------------------------------------------------------
def test_ddim_eta0_matches_ddim_pipeline(small):
    unet, folder = small
    model, _ = registry.load_model("ddpm", weights=str(folder))
    scheduler = diffusers.DDIMScheduler.from_config(diffusers.DDPMScheduler(**DDPM_CONFIG).config)
    assert scheduler.config.clip_sample  # inherited from the DDPM config, as DDIMPipeline users get it
    pipe = diffusers.DDIMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    want = pipe(batch_size=2, generator=gen(7), eta=0.0, num_inference_steps=12, output_type="pt").images
    # README's figure: within 1e-4 (measured 1.9e-5..4.8e-5 plain, 2.8e-5..6.3e-5 fast, seeds 7-9,
    # 12 and 50 steps, on this 2-core AMD EPYC VM, 2026-12)
    plain = model.sample(2, gen(7), sampler="ddim", steps=12, eta=0.0, fast=False)
    assert (plain / 2 + 0.5 - want).abs().max() < 1e-4
    fast = model.sample(2, gen(7), sampler="ddim", steps=12, eta=0.0)  # fast=True is the default
    assert (fast / 2 + 0.5 - want).abs().max() < 1e-4


def test_ddpm_ancestral_sampling_matches_ddpm_pipeline(small):
    """Same generator, same draws: the initial noise, then one noise tensor per step with t > 0."""
    unet, folder = small
    model, _ = registry.load_model("ddpm", weights=str(folder))
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(**DDPM_CONFIG))
    pipe.set_progress_bar_config(disable=True)
    want = pipe(batch_size=2, generator=gen(11), num_inference_steps=8, output_type="pt").images
    got = model.sample(2, gen(11), steps=8)  # the config's sampler: ddpm, fixed_large
    assert (got / 2 + 0.5 - want).abs().max() < 1e-4


# --- (d) legacy attention names, .bin weights, no scheduler -----------------------------------
def test_legacy_attention_keys_and_bin_weights_load(small, tmp_path):
    unet, _ = small
    legacy = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    sd = {}
    for k, v in unet.state_dict().items():
        for new, old in legacy.items():
            k = k.replace(f".{new}.", f".{old}.")
        sd[k] = v.clone()
    assert any(".proj_attn." in k for k in sd)
    folder = tmp_path / "legacy"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", **SMALL}))
    torch.save(sd, folder / "diffusion_pytorch_model.bin")
    with pytest.warns(UserWarning, match="no scheduler_config.json; assuming DDPM defaults"):
        model, _ = registry.load_model("ddpm", weights=str(folder))
    assert model.schedule.variance_type == "fixed_small" and model.config["sampling"]["sampler"] == "ddpm"
    x, t = inputs(unet)
    with torch.no_grad():
        assert (model.unet(x, t) - unet(x, t).sample).abs().max() < 1e-4


# --- (e) from a (fake) Hub --------------------------------------------------------------------
def test_a_hub_repo_loads_through_the_registry(small, tmp_path, monkeypatch):
    unet, folder = small
    files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert "unet/diffusion_pytorch_model.safetensors" in files and "model_index.json" in files
    monkeypatch.setenv("GENCLI_CACHE", str(tmp_path / "gencli"))
    with FakeHub(repos={"org/ddpm-small": files}) as hub:
        use_fake_hub(monkeypatch, hub, tmp_path / "hf")
        model, meta = registry.load_model("ddpm", weights="org/ddpm-small")
    x, t = inputs(unet)
    with torch.no_grad():
        assert (model.unet(x, t) - unet(x, t).sample).abs().max() < 1e-4
    assert meta["source_format"] == "diffusers"


# --- (f) gencli convert -----------------------------------------------------------------------
def test_convert_writes_a_gencli_checkpoint_with_the_same_forward(small, tmp_path):
    unet, folder = small
    out = convert(str(folder), str(tmp_path / "model.safetensors"))
    assert out == tmp_path / "model.safetensors"
    model, meta = registry.load_model("ddpm", weights=str(out))
    assert meta["family"] == "ddpm" and meta["source_format"] == "diffusers" and meta["image_size"] == 16
    direct, _ = registry.load_model("ddpm", weights=str(folder))
    assert model.config == direct.config
    x, t = inputs(unet)
    with torch.no_grad():
        assert torch.equal(model.unet(x, t), direct.unet(x, t))
        assert (model.unet(x, t) - unet(x, t).sample).abs().max() < 1e-4
    with pytest.raises(Exception, match="exists; pass --force"):
        convert(str(folder), str(out))
    assert convert(str(folder / "unet"), str(out), force=True) == out  # the unet/ sub-folder works too
    assert load_diffusers(folder / "unet")[0]["scheduler"]["variance_type"] == "fixed_large"  # ../scheduler


# --- (g) attention_head_dim: missing is 8, null is one head -----------------------------------
def test_missing_attention_head_dim_means_eight_dim_heads(tmp_path):
    ref = random_unet({k: v for k, v in SMALL.items() if k != "attention_head_dim"})  # diffusers' default
    assert ref.config.attention_head_dim == 8
    for name, head_dim in (("missing", 8), ("null", None)):
        unet = random_unet(SMALL, attention_head_dim=8) if head_dim else random_unet(SMALL)
        folder = tmp_path / name
        unet.save_pretrained(folder)
        cfg = json.loads((folder / "config.json").read_text())
        if name == "missing":
            del cfg["attention_head_dim"]
        (folder / "config.json").write_text(json.dumps(cfg))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, _ = registry.load_model("ddpm", weights=str(folder))
            reloaded = diffusers.UNet2DModel.from_pretrained(folder).eval()
        attn = model.unet.mid_block.attentions[0]
        assert attn.heads == (64 // 8 if name == "missing" else 1)
        x, t = inputs(unet)
        with torch.no_grad():
            assert (model.unet(x, t) - reloaded(x, t).sample).abs().max() < 1e-4
            if name == "missing":  # the same weights read as one 64-wide head give other outputs
                attn.heads = 1
                assert (model.unet(x, t) - reloaded(x, t).sample).abs().max() > 1e-3


# --- what is refused ----------------------------------------------------------------------------
@pytest.mark.parametrize("change, match", [
    ({"_class_name": "UNet2DConditionModel"}, "UNet2DConditionModel is not supported"),
    ({"time_embedding_type": "fourier"}, "time_embedding_type"),
    ({"out_channels": 6}, "learned variance"),
    ({"attn_norm_num_groups": 4}, "attn_norm_num_groups"),
    ({"sample_size": [16, 32]}, "sample_size"),
])
def test_unsupported_unet_configs_are_one_line_errors(small, tmp_path, change, match):
    _, folder = small
    bad = tmp_path / "bad"
    bad.mkdir()
    cfg = json.loads((folder / "unet" / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, **change}))
    (bad / "diffusion_pytorch_model.safetensors").write_bytes(
        (folder / "unet" / "diffusion_pytorch_model.safetensors").read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match=match) as e:
            load_diffusers(bad)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("change, match", [
    ({"_class_name": "ScoreSdeVeScheduler"}, "not supported"),
    ({"beta_schedule": "sigmoid"}, "beta_schedule"),
    ({"variance_type": "learned_range"}, "variance_type"),
])
def test_unsupported_schedulers_are_one_line_errors(small, tmp_path, change, match):
    _, folder = small
    bad = tmp_path / "bad"
    (bad / "scheduler").mkdir(parents=True)
    (bad / "unet").symlink_to(folder / "unet")
    cfg = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    (bad / "scheduler" / "scheduler_config.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(InputError, match=match) as e:
        load_diffusers(bad)
    assert "\n" not in str(e.value)


def test_scheduler_fields_are_carried_over(small, tmp_path):
    _, folder = small
    pipe = tmp_path / "ddim"
    (pipe / "scheduler").mkdir(parents=True)
    (pipe / "unet").symlink_to(folder / "unet")
    diffusers.DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False, prediction_type="v_prediction",
                            steps_offset=1, timestep_spacing="trailing").save_pretrained(pipe / "scheduler")
    config, tensors, meta = load_diffusers(pipe)
    assert config["scheduler"]["beta_schedule"] == "cosine" and not config["scheduler"]["clip_sample"]
    assert config["scheduler"]["prediction_type"] == "v_prediction" and config["scheduler"]["steps_offset"] == 1
    assert config["sampling"]["sampler"] == "ddim" and config["sampling"]["steps"] == 50
    assert config["sampling"]["spacing"] == "trailing"
    assert config["num_classes"] is None and config["null_class"] is None
    assert all(k.startswith("unet.") for k in tensors)
    assert meta == {"source_format": "diffusers", "dataset": "", "image_size": 16, "channels": 3}
