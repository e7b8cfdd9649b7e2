"""gencli's UNet2DModel: the inference fast path (channels_last, Winograd F(4x4,3x3), fused
projections) against the plain forward, and the helpers (no diffusers needed). The kernels and
their dispatch are tested on their own in tests/kernels/."""

import copy

import pytest
import torch

from gencli.errors import InputError
from gencli.models.diffusion.unet import UNet2DModel, normalize_config, rename_legacy_keys
from tiny import randomize

SMALL = {
    "sample_size": 16, "in_channels": 3, "out_channels": 3,
    "block_out_channels": [32, 64], "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "norm_num_groups": 8, "attention_head_dim": 16, "freq_shift": 1, "flip_sin_to_cos": False,
    "downsample_padding": 0, "norm_eps": 1e-6,
}


def make(seed: int = 0, **over) -> UNet2DModel:
    return randomize(UNet2DModel({**SMALL, **over}), seed).eval()


def inputs(model: UNet2DModel, n: int = 2, size: int = 16, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, model.config["in_channels"], size, size, generator=g)
    t = torch.tensor([999, 3][:n] + [500] * max(n - 2, 0))
    labels = None
    if model.config["num_class_embeds"]:
        labels = torch.arange(n) % model.config["num_class_embeds"]
    return x, t, labels


# --- the fast path against the plain forward --------------------------------------------------
@pytest.mark.parametrize("over", [
    {},
    {"attention_head_dim": None, "num_class_embeds": 3},
    {"resnet_time_scale_shift": "scale_shift", "mid_block_scale_factor": 2.0 ** 0.5},
    {"downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "center_input_sample": True},
], ids=["default", "one-head+classes", "scale-shift", "padding1"])
@pytest.mark.parametrize("winograd", [None, False, True])
def test_fast_path_matches_plain_forward(over, winograd):
    model = make(**over)
    x, t, labels = inputs(model, n=4)
    with torch.inference_mode():
        want = model(x, t, labels)
        fast = copy.deepcopy(model).optimize_for_inference(winograd=winograd)
        got = fast(x, t, labels)
        with model.fast_inference(winograd=winograd):
            in_session = model(x, t, labels)
    assert got.shape == want.shape and got.is_contiguous()
    tol = 1e-5 if winograd is False else 1e-4
    torch.testing.assert_close(got, want, rtol=0, atol=tol)
    torch.testing.assert_close(in_session, got, rtol=0, atol=1e-6)


def test_fast_path_on_sizes_not_divisible_by_four():
    model = make()
    x, t, _ = inputs(model, n=2, size=12)  # 12x12 -> 6x6 after the downsampler: direct conv there
    with torch.no_grad():
        want = model(x, t)
        with model.fast_inference(winograd=True):
            got = model(x, t)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


def test_fast_path_is_off_for_training_and_autograd():
    model = make()
    model.optimize_for_inference()
    x, t, _ = inputs(model)
    plain = make()
    out = model(x, t)  # grad enabled: plain path, differentiable
    assert out.requires_grad
    out.sum().backward()
    assert model.conv_in.weight.grad is not None
    torch.testing.assert_close(out.detach(), plain(x, t).detach(), rtol=0, atol=1e-5)  # channels_last weights
    model.train()
    assert not model._use_fast()
    with torch.no_grad():
        assert not model._use_fast()
        model.eval()
        assert model._use_fast()


def test_optimize_keeps_the_state_dict_and_sees_new_weights():
    model = make(seed=0)
    keys = list(model.state_dict())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.optimize_for_inference()
    after = model.state_dict()
    assert list(after) == keys
    for k in keys:
        assert torch.equal(after[k], before[k]), k
    x, t, _ = inputs(model, n=4)
    with torch.no_grad():
        model(x, t)  # builds the caches (Winograd filters, fused projections)
        other = make(seed=5)
        model.load_state_dict(other.state_dict())
        torch.testing.assert_close(model(x, t), other(x, t), rtol=0, atol=1e-4)


def test_fast_inference_context_restores_and_frees():
    model = make()
    x, t, _ = inputs(model, n=4)
    with torch.no_grad(), model.fast_inference() as m:
        assert m is model and model._use_fast()
        m(x, t)
        assert model._fast.cache
    assert model._fast is None
    with model.fast_inference(enabled=False):
        assert model._fast is None
    model.optimize_for_inference()
    persistent = model._fast
    with torch.no_grad(), model.fast_inference():
        assert model._fast is persistent  # an optimized model keeps its caches
        model(x, t)
    with model.fast_inference(winograd=False):
        assert model._fast is not persistent and model._fast.winograd is False
    with model.fast_inference(enabled=False):
        assert not model._use_fast()
    assert model._fast is persistent and persistent.cache


def test_fast_path_under_bf16_autocast_runs_direct_convolutions():
    model = make()
    x, t, _ = inputs(model, n=4)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = model(x, t).float()
        with model.fast_inference():
            got = model(x, t).float()
    assert torch.isfinite(got).all()
    assert (got - want).abs().max() < 0.1  # bf16: only a sanity bound


# --- config and keys --------------------------------------------------------------------------
def test_rename_legacy_keys():
    sd = {"mid_block.attentions.0.query.weight": 1, "mid_block.attentions.0.proj_attn.bias": 2,
          "down_blocks.1.attentions.0.key.weight": 3, "down_blocks.1.attentions.0.value.bias": 4,
          "down_blocks.1.resnets.0.conv1.weight": 5}
    assert rename_legacy_keys(sd) == {
        "mid_block.attentions.0.to_q.weight": 1, "mid_block.attentions.0.to_out.0.bias": 2,
        "down_blocks.1.attentions.0.to_k.weight": 3, "down_blocks.1.attentions.0.to_v.bias": 4,
        "down_blocks.1.resnets.0.conv1.weight": 5}


def test_attention_head_dim_missing_means_eight_and_null_means_one_head():
    missing = {k: v for k, v in SMALL.items() if k != "attention_head_dim"}
    assert normalize_config(missing)["attention_head_dim"] == 8
    assert UNet2DModel(missing).mid_block.attentions[0].heads == 64 // 8
    assert UNet2DModel({**SMALL, "attention_head_dim": None}).mid_block.attentions[0].heads == 1


@pytest.mark.parametrize("over, what", [
    ({"time_embedding_type": "fourier"}, "time_embedding_type"),
    ({"down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"]}, "CrossAttnDownBlock2D"),
    ({"act_fn": "gelu"}, "act_fn"),
])
def test_unsupported_configs_are_refused(over, what):
    with pytest.raises(InputError, match=what):
        normalize_config({**SMALL, **over})
