"""The FID Inception network, its converter, weights resolution and the two preprocessing modes."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gencli.convert.fid_inception import convert_fid_inception
from gencli.errors import InputError, UsageError, WeightsNotFound
from gencli.metrics.inception import FIDInceptionV3, check_state_dict, load_inception
from gencli.metrics.preprocess import inception_input, tf_resize_bilinear, to_uint8_levels
from gencli.metrics.testing import random_inception_state, save_pth
from gencli.metrics.weights import resolve_network_weights

ALL = ["64", "192", "768", "2048", "logits_unbiased", "logits"]


@pytest.fixture(scope="module")
def state():
    return random_inception_state(0)


@pytest.fixture(scope="module")
def reference(state):
    model = FIDInceptionV3()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    return model.eval()


@pytest.fixture(scope="module")
def small_input():
    # the network is fully convolutional: 99x99 inputs exercise every layer at a ninth of the cost
    return torch.rand(2, 3, 99, 99, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.fixture(scope="module")
def reference_out(reference, small_input):
    with torch.inference_mode():
        return reference(small_input, ALL)


def test_outputs_and_dims(reference_out):
    dims = {k: v.shape[1] for k, v in reference_out.items()}
    assert dims == {"64": 64, "192": 192, "768": 768, "2048": 2048, "logits_unbiased": 1008, "logits": 1008}
    for v in reference_out.values():
        assert v.dtype == torch.float32 and torch.isfinite(v).all() and v.shape[0] == 2
    assert (reference_out["2048"] >= 0).all()  # after ReLU and average pooling
    assert not torch.equal(reference_out["logits"], reference_out["logits_unbiased"])


def test_partial_outputs_stop_early(reference, small_input, reference_out):
    with torch.inference_mode():
        out = reference(small_input, ["64"])
    assert list(out) == ["64"]
    torch.testing.assert_close(out["64"], reference_out["64"])


def test_fused_channels_last_matches(reference, small_input, reference_out):
    fused = reference.fused()
    assert fused.is_fused and not isinstance(fused.Mixed_5b.branch1x1.bn, torch.nn.BatchNorm2d)
    with torch.inference_mode():
        out = fused(small_input.contiguous(memory_format=torch.channels_last), ALL)
    for k in ALL:
        scale = reference_out[k].abs().max()
        assert (out[k] - reference_out[k]).abs().max() <= 2e-5 * scale, k


def test_fused_winograd_matches_direct_convolutions(reference, small_input):
    from gencli.kernels import native
    from gencli.metrics.inception import BasicConv2d

    if not native.available():
        pytest.skip("no C compiler: the Inception keeps direct convolutions")
    wino, direct = reference.fused(), reference.fused(winograd=False)
    layers = [m for m in wino.modules() if isinstance(m, BasicConv2d) and m.winograd]
    square = [m for m in layers if m.conv.kernel_size == (3, 3)]
    # the stride-1 3x3 convs: Conv2d_2a/2b/4a, two per Mixed_5b/5c/5d, one in Mixed_6a/7b/7c; the
    # 1x7/7x1 ones: six per Mixed_6b..6e, two in Mixed_7a; the 1x3/3x1 ones: four per Mixed_7b/7c;
    # the 5x5 ones: one per Mixed_5b/5c/5d
    assert len(square) == 12 and len(layers) == 12 + 26 + 8 + 3
    assert not any(m.winograd for m in direct.modules() if isinstance(m, BasicConv2d))
    x = small_input.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got, want = wino(x, ALL), direct(x, ALL)
    for k in ALL:
        assert (got[k] - want[k]).abs().max() <= 1e-5 * want[k].abs().max(), k
    assert not torch.equal(got["2048"], want["2048"])  # the Winograd path did run


def test_fused_model_built_under_inference_mode_runs(state, small_input):
    # inference tensors have no version counter: the Winograd filters' cache must not need one
    with torch.inference_mode():
        model = FIDInceptionV3()
        model.load_state_dict(state, strict=False)
        out = model.fuse_()(small_input.contiguous(memory_format=torch.channels_last), ["2048"])
    assert out["2048"].shape == (2, 2048) and torch.isfinite(out["2048"]).all()


def test_torchvision_key_names(state):
    keys = set(state)
    assert "Conv2d_1a_3x3.conv.weight" in keys
    assert "Mixed_7c.branch_pool.bn.running_var" in keys
    assert "Mixed_5b.branch_pool.conv.weight" in keys
    assert tuple(state["fc.weight"].shape) == (1008, 2048)
    assert not any("AuxLogits" in k for k in keys)
    n_params = sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var",
                                                                             "num_batches_tracked")))
    assert n_params == 23_850_960  # as pytorch-fid's fid_inception_v3(): 1008 classes, no aux head


# --- converter --------------------------------------------------------------------------------
def test_convert_roundtrip(tmp_path, state, reference, small_input, reference_out):
    pth = save_pth(state, tmp_path / "random-fixture-inception.pth")
    out = convert_fid_inception(pth, tmp_path / "fid_inception.safetensors")
    from gencli.checkpoints import read_metadata

    meta = read_metadata(out)
    assert meta["family"] == "fid-inception" and meta["official"] is False
    assert len(meta["source_sha256"]) == 64
    model = load_inception(out, fuse=False)
    with torch.inference_mode():
        got = model(small_input, ALL)
    for k in ALL:  # same float32 math; only the thread count may differ between the two runs
        assert (got[k] - reference_out[k]).abs().max() <= 1e-5 * reference_out[k].abs().max(), k
    with pytest.raises(UsageError, match="exists"):
        convert_fid_inception(pth, out)
    convert_fid_inception(pth, out, force=True)
    with pytest.raises(UsageError, match=".safetensors"):
        convert_fid_inception(pth, tmp_path / "x.pth")


def test_convert_accepts_wrappers_and_prefix(tmp_path, state):
    wrapped = {"state_dict": {"module." + k: v for k, v in state.items()}}
    pth = save_pth(wrapped, tmp_path / "wrapped.pth")
    out = convert_fid_inception(pth, tmp_path / "w.safetensors")
    plain = convert_fid_inception(save_pth(state, tmp_path / "plain.pth"), tmp_path / "p.safetensors")
    from safetensors.torch import load_file

    got, want = load_file(str(out)), load_file(str(plain))
    assert set(got) == set(want) and not any(k.startswith(("module.", "state_dict")) for k in got)
    assert all(torch.equal(got[k], want[k]) for k in want)  # the same tensors as the unwrapped file
    kept = [k for k in state if not k.endswith("num_batches_tracked")]
    assert all(torch.equal(got[k], state[k]) for k in kept)  # and those are the file's own weights


def test_convert_wrong_network(tmp_path, state):
    other = {"features.0.weight": torch.zeros(64, 3, 3, 3), "classifier.0.weight": torch.zeros(10, 10)}
    with pytest.raises(InputError, match="is not the FID InceptionV3 network") as e:
        convert_fid_inception(save_pth(other, tmp_path / "vgg.pth"), tmp_path / "o.safetensors")
    assert "\n" not in str(e.value)
    imagenet = dict(state)
    imagenet["fc.weight"] = torch.zeros(1000, 2048)
    imagenet["fc.bias"] = torch.zeros(1000)
    with pytest.raises(InputError, match="1008"):
        convert_fid_inception(save_pth(imagenet, tmp_path / "tv.pth"), tmp_path / "o.safetensors")
    partial = {k: v for k, v in state.items() if not k.startswith("Mixed_7c")}
    with pytest.raises(InputError, match="missing"):
        convert_fid_inception(save_pth(partial, tmp_path / "p.pth"), tmp_path / "o.safetensors")
    assert not (tmp_path / "o.safetensors").exists()


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_convert_refuses_pickled_code_and_junk(tmp_path, capsys):
    bad = tmp_path / "evil.pth"
    torch.save({"x": _Evil()}, bad)
    with pytest.raises(InputError, match="weights_only"):
        convert_fid_inception(bad, tmp_path / "o.safetensors")
    assert "pickled code ran" not in capsys.readouterr().out
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(InputError, match="not a PyTorch weights file|cannot be read safely"):
        convert_fid_inception(junk, tmp_path / "o.safetensors")
    with pytest.raises(InputError, match="no such file"):
        convert_fid_inception(tmp_path / "missing.pth", tmp_path / "o.safetensors")
    pickle  # noqa: B018 - imported for the reducer protocol


def test_load_inception_rejects_other_checkpoints(tmp_path):
    from gencli.checkpoints import save_checkpoint

    path = save_checkpoint(tmp_path / "m.safetensors", {"w": torch.zeros(2)}, {"family": "ddpm"})
    with pytest.raises(InputError, match="ddpm checkpoint"):
        load_inception(path)
    path = save_checkpoint(tmp_path / "n.safetensors", {"w": torch.zeros(2)}, {})
    with pytest.raises(InputError, match="not the FID InceptionV3"):
        load_inception(path)


def test_check_state_dict_drops_num_batches_tracked(state):
    clean = check_state_dict(state, "x")
    assert not any(k.endswith("num_batches_tracked") for k in clean)


# --- weights resolution -----------------------------------------------------------------------
@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("GENCLI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr("gencli.metrics.weights.bundled_weights_dir", lambda: tmp_path / "bundled")
    return tmp_path


def test_offline_without_weights_lists_the_ways_out(isolated):
    with pytest.raises(WeightsNotFound) as e:
        resolve_network_weights("fid-inception")
    msg = str(e.value)
    assert "\n" not in msg
    assert "gencli pull fid-inception" in msg
    assert "gencli convert fid-inception pt_inception-2015-12-05-6726825d.pth" in msg
    assert "--weights" in msg and "--features fmnist" in msg


def test_torch_hub_cache_pth_is_converted_once(isolated, state, monkeypatch):
    import dataclasses

    from gencli.metrics import weights as weights_mod

    # the lookup by name, exercised under a fixture name (random weights never get the real one)
    spec = weights_mod.NETWORKS["fid-inception"]
    monkeypatch.setitem(weights_mod.NETWORKS, "fid-inception",
                        dataclasses.replace(spec, pth_names=("random-fixture-inception.pth",)))
    save_pth(state, isolated / "torch" / "hub" / "checkpoints" / "random-fixture-inception.pth")
    path = resolve_network_weights("fid-inception")
    assert path.suffix == ".safetensors" and str(isolated / "cache") in str(path)
    mtime = path.stat().st_mtime_ns
    assert resolve_network_weights("fid-inception") == path and path.stat().st_mtime_ns == mtime


def test_explicit_weights_pth_and_safetensors(isolated, state):
    pth = save_pth(state, isolated / "mine.pth")
    converted = resolve_network_weights("fid-inception", str(pth))
    assert converted.suffix == ".safetensors"
    assert resolve_network_weights("fid-inception", str(converted)) == converted
    cached = isolated / "cache" / "weights" / "fid_inception.safetensors"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(converted.read_bytes())
    assert resolve_network_weights("fid-inception") == cached


def test_hub_download(isolated, monkeypatch, state, tmp_path):
    from hubserver import FakeHub, use_fake_hub

    st = convert_fid_inception(save_pth(state, tmp_path / "a.pth"), tmp_path / "fid_inception.safetensors")
    with FakeHub(repos={"gencli/fid-inception": {"fid_inception.safetensors": st.read_bytes()}}) as hub:
        use_fake_hub(monkeypatch, hub, tmp_path / "hf2")
        path = resolve_network_weights("fid-inception")
        assert path.read_bytes() == st.read_bytes()


# --- preprocessing ----------------------------------------------------------------------------
def _tf1_resize_reference(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Loop transcription of TF1 resize_bilinear (align_corners=False, half_pixel_centers=False)."""
    h, w = img.shape
    out = np.zeros((out_h, out_w))
    for y in range(out_h):
        sy = y * h / out_h
        y0 = int(math.floor(sy))
        y1 = min(y0 + 1, h - 1)
        dy = sy - y0
        for x in range(out_w):
            sx = x * w / out_w
            x0 = int(math.floor(sx))
            x1 = min(x0 + 1, w - 1)
            dx = sx - x0
            top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * dx
            bot = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * dx
            out[y, x] = top + (bot - top) * dy
    return out


@pytest.mark.parametrize("src,dst", [((5, 7), (11, 13)), ((12, 9), (4, 5)), ((3, 3), (3, 3)), ((28, 28), (299, 299))])
def test_tf_resize_matches_tf1_definition(src, dst):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=src).astype(np.float64)
    ours = tf_resize_bilinear(torch.from_numpy(img)[None, None].float(), dst)[0, 0].double().numpy()
    np.testing.assert_allclose(ours, _tf1_resize_reference(img, *dst), atol=1e-3)


def test_pytorch_fid_mode_is_bilinear_on_unit_range():
    x = torch.rand(2, 3, 28, 40) * 2 - 1
    expected = 2 * F.interpolate((x + 1) / 2, size=(299, 299), mode="bilinear", align_corners=False) - 1
    got = inception_input(x, "pytorch-fid")
    assert torch.equal(got, expected) and got.is_contiguous(memory_format=torch.channels_last)


def test_tf_mode_scaling_and_grey():
    levels = torch.arange(256, dtype=torch.float32).view(1, 1, 16, 16)
    x = levels / 127.5 - 1  # what decoding 8-bit values gives
    torch.testing.assert_close(to_uint8_levels(x), levels)
    y = inception_input(x, "tf", size=16)  # same size: identity resize
    assert y.shape == (1, 3, 16, 16)
    torch.testing.assert_close(y[0, 0], (levels[0, 0] - 128) / 128)
    torch.testing.assert_close(y[0, 0], y[0, 2])
    with pytest.raises(UsageError, match="--preprocess"):
        inception_input(x, "bicubic")
