"""gencli.checkpoints: safetensors checkpoints with JSON metadata, training state, atomic writes."""

from __future__ import annotations

import errno
import json
import math
import os
import random
import struct

import numpy as np
import pytest
import torch

from gencli.checkpoints import (
    Checkpoint,
    load_checkpoint,
    read_metadata,
    require_family,
    save_checkpoint,
)
from gencli.errors import GencliError, InputError, UsageError
from gencli.training_state import load_training_state, save_training_state

METADATA = {
    "family": "ddpm",
    "config": {"channels": 32, "mults": [1, 2], "attention": None, "dropout": 0.1},
    "dataset": "fashion-mnist",
    "image_size": 28,
    "channels": 1,
    "step": 1200,
    "notes": "123",  # a string that looks like JSON must stay a string
    "extra_list": [1, "a", True],
}


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "conv.weight": torch.randn(8, 1, 3, 3, generator=g),
        "conv.bias": torch.randn(8, generator=g, dtype=torch.float64),
        "steps": torch.arange(5, dtype=torch.int64),
        "mask": torch.tensor([True, False]),
        "scalar": torch.tensor(3.5),
        "bf16": torch.randn(4, generator=g).to(torch.bfloat16),
    }


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_round_trip_tensors_and_metadata(tmp_path):
    tensors = _tensors()
    path = save_checkpoint(tmp_path / "sub" / "model.safetensors", tensors, METADATA)
    assert path == tmp_path / "sub" / "model.safetensors"
    ckpt = load_checkpoint(path)
    assert isinstance(ckpt, Checkpoint) and ckpt.path == path
    assert set(ckpt.tensors) == set(tensors)
    for k, v in tensors.items():
        assert ckpt.tensors[k].dtype == v.dtype and torch.equal(ckpt.tensors[k], v)
    md = ckpt.metadata
    assert md["gencli_format"] == 1
    for k, v in METADATA.items():
        assert md[k] == v and type(md[k]) is type(v), k
    assert ckpt.family == "ddpm" and ckpt.config == METADATA["config"] and ckpt.is_gencli
    assert "gencli_json" not in md
    assert read_metadata(path) == md
    # The raw header holds strings only, as the format requires.
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        raw = f.metadata()
    assert raw["gencli_format"] == "1" and raw["image_size"] == "28" and raw["family"] == "ddpm"
    assert json.loads(raw["config"]) == METADATA["config"]


def test_non_contiguous_gpu_free_and_shared_tensors(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    tensors = {
        "t": base.t(),  # non-contiguous view
        "a": base,
        "tied": base,  # same storage twice (tied weights)
        "row": base[1],  # a view into the same storage
        "grad": torch.ones(2, requires_grad=True) * 2,
    }
    path = save_checkpoint(tmp_path / "m.safetensors", tensors, {"family": "x"})
    loaded = load_checkpoint(path).tensors
    for k, v in tensors.items():
        assert torch.equal(loaded[k], v.detach()), k


def test_fp16_storage(tmp_path):
    tensors = _tensors()
    tensors["big"] = torch.randn(256, 256)
    full = save_checkpoint(tmp_path / "fp32.safetensors", tensors, METADATA)
    half = save_checkpoint(tmp_path / "fp16.safetensors", tensors, METADATA, dtype=torch.float16)
    loaded = load_checkpoint(half).tensors
    assert loaded["big"].dtype == torch.float16 and loaded["conv.bias"].dtype == torch.float16
    assert loaded["steps"].dtype == torch.int64 and loaded["mask"].dtype == torch.bool  # kept
    torch.testing.assert_close(loaded["big"].float(), tensors["big"], atol=2e-3, rtol=1e-3)
    assert half.stat().st_size < 0.6 * full.stat().st_size


def test_overwrite_refused_unless_forced(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", {"w": torch.zeros(2)}, {"family": "a"})
    before = path.read_bytes()
    with pytest.raises(UsageError, match=r"m\.safetensors exists; pass --force to overwrite"):
        save_checkpoint(path, {"w": torch.ones(2)}, {"family": "b"})
    assert path.read_bytes() == before
    save_checkpoint(path, {"w": torch.ones(2)}, {"family": "b"}, force=True)
    assert load_checkpoint(path).family == "b"
    with pytest.raises(UsageError, match="is a folder"):
        save_checkpoint(tmp_path, {"w": torch.ones(2)}, {})


@pytest.mark.parametrize("failure", ["disk_full", "interrupt"])
def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, failure):
    import safetensors.torch

    path = save_checkpoint(tmp_path / "m.safetensors", {"w": torch.zeros(4)}, {"family": "a"})
    before = path.read_bytes()
    calls = []

    def broken_save_file(tensors, filename, metadata=None):
        calls.append(filename)
        with open(filename, "wb") as f:  # half a file, then the failure
            f.write(b"\x00" * 10)
        if failure == "disk_full":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save_file)
    expected = GencliError if failure == "disk_full" else KeyboardInterrupt
    with pytest.raises(expected) as info:
        save_checkpoint(path, {"w": torch.ones(4)}, {"family": "b"}, force=True)
    if failure == "disk_full":
        assert "No space left on device" in str(info.value) and "\n" not in str(info.value)
    assert calls and os.path.dirname(calls[0]) == str(tmp_path)  # temp file in the same folder
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []
    monkeypatch.undo()
    assert load_checkpoint(path).family == "a"


def test_failed_rename_keeps_old_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.safetensors", {"w": torch.zeros(4)}, {"family": "a"})
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(GencliError, match="cannot write"):
        save_checkpoint(path, {"w": torch.ones(4)}, {"family": "b"}, force=True)
    monkeypatch.undo()
    assert path.read_bytes() == before and _leftovers(tmp_path) == []


def test_truncated_file_is_input_error(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", {"w": torch.randn(64, 64)}, {"family": "a"})
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    for fn in (load_checkpoint, read_metadata):
        with pytest.raises(InputError, match=r"cut\.safetensors is truncated or not a safetensors file"):
            fn(cut)
    header_cut = tmp_path / "header_cut.safetensors"
    header_cut.write_bytes(data[:20])
    with pytest.raises(InputError, match="truncated"):
        load_checkpoint(header_cut)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"abc",
        bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
        struct.pack("<Q", 10) + b"not json!!",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
    ],
    ids=["empty", "tiny", "random", "bad-json", "png"],
)
def test_not_a_safetensors_file_is_input_error(tmp_path, content):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "junk.safetensors" in msg and "not a safetensors file" in msg and "\n" not in msg


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(InputError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_read_metadata_does_not_load_tensors(tmp_path, monkeypatch):
    import safetensors.torch

    path = save_checkpoint(tmp_path / "m.safetensors", {"w": torch.zeros(3)}, METADATA)

    def no_loading(*args, **kwargs):
        raise AssertionError("tensors were loaded")

    monkeypatch.setattr(safetensors.torch, "load_file", no_loading)
    assert read_metadata(path)["family"] == "ddpm"


def test_foreign_file_and_require_family(tmp_path):
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "pt", "n": "3"})
    ckpt = load_checkpoint(foreign)
    assert ckpt.metadata == {"format": "pt", "n": 3} and ckpt.family is None and not ckpt.is_gencli
    with pytest.raises(InputError, match="has no gencli metadata"):
        require_family(ckpt, "ddpm")

    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))
    assert load_checkpoint(bare).metadata == {}

    gan = load_checkpoint(save_checkpoint(tmp_path / "gan.safetensors", {"w": torch.zeros(2)}, {"family": "dcgan"}))
    assert require_family(gan, "dcgan") is gan
    assert require_family(gan, ["ddpm", "dcgan"]) is gan
    with pytest.raises(InputError) as info:
        require_family(gan, "ddpm")
    assert "gan.safetensors is a dcgan checkpoint, not ddpm" in str(info.value)


# ------------------------------------------------------------------------------------------
# Training state
# ------------------------------------------------------------------------------------------


def _make_model_and_opt(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(
        [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 3e-3}],
        lr=1e-2,
        betas=(0.8, 0.99),
        weight_decay=1e-4,
    )
    return model, opt


def _step(model, opt, i: int) -> None:
    g = torch.Generator().manual_seed(100 + i)
    x = torch.randn(16, 4, generator=g)
    loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_adam_state_round_trip_continues_identically(tmp_path):
    model, opt = _make_model_and_opt()
    for i in range(3):
        _step(model, opt, i)
    path = save_training_state(
        tmp_path / "state.safetensors",
        {"step": 3, "model": model.state_dict(), "optimizers": [opt.state_dict()], "config": {"lr": 1e-2}},
    )
    # The uninterrupted run.
    for i in range(3, 6):
        _step(model, opt, i)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    state = load_training_state(path)
    assert state["step"] == 3 and state["config"] == {"lr": 1e-2}
    opt_sd = state["optimizers"][0]
    assert all(isinstance(k, int) for k in opt_sd["state"])  # int keys come back as ints
    assert opt_sd["param_groups"][0]["betas"] == (0.8, 0.99)  # tuples come back as tuples
    assert opt_sd["param_groups"][1]["params"] == [2, 3]

    model2, opt2 = _make_model_and_opt(seed=123)  # different init: everything must come from the file
    model2.load_state_dict(state["model"])
    opt2.load_state_dict(opt_sd)
    for i in range(3, 6):
        _step(model2, opt2, i)
    for k, v in model2.state_dict().items():
        assert torch.equal(v, expected[k]), k


def test_rng_states_round_trip(tmp_path):
    torch.manual_seed(7)
    random.seed(7)
    np.random.seed(7)
    gen = np.random.default_rng(7)
    torch.rand(3), random.random(), np.random.rand(), gen.random()  # advance
    state = {
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": [torch.get_rng_state().clone(), torch.get_rng_state().clone()],  # stand-in on CPU
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "numpy_generator": gen.bit_generator.state,
        }
    }
    expected = (torch.rand(4), random.random(), np.random.rand(3), gen.random(2))
    save_training_state(tmp_path / "s.safetensors", state)
    torch.manual_seed(0), random.seed(0), np.random.seed(0)

    rng = load_training_state(tmp_path / "s.safetensors")["rng"]
    assert rng["python"] == state["rng"]["python"] and isinstance(rng["python"], tuple)
    assert isinstance(rng["numpy"], tuple) and rng["numpy"][1].dtype == np.uint32
    assert all(r.dtype == torch.uint8 for r in rng["cuda"]) and len(rng["cuda"]) == 2
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    gen2 = np.random.default_rng()
    gen2.bit_generator.state = rng["numpy_generator"]
    got = (torch.rand(4), random.random(), np.random.rand(3), gen2.random(2))
    assert torch.equal(got[0], expected[0]) and got[1] == expected[1]
    assert np.array_equal(got[2], expected[2]) and np.array_equal(got[3], expected[3])


def test_training_state_structure_is_exact(tmp_path):
    state = {
        "ints": {0: "a", 1: {"nested": (1, 2.5, None)}, -3: []},
        "mixed_keys": {"x": 1, 2: 2, (1, "t"): 3, None: 4, True: 5},
        "tag_like": {"__tuple__": [1, 2], "__tensor__": "not a tensor"},
        "floats": [float("nan"), float("inf"), -float("inf"), 0.1, 1e300],
        "bigint": 2**100,
        "bytes": b"\x00\xffraw",
        "np": {"arr": np.arange(6, dtype=">i2").reshape(2, 3), "f64": np.float64(0.25), "i32": np.int32(-5)},
        "empty": {"t": torch.zeros(0, 3), "d": {}, "l": [], "tup": ()},
        "slash/key": {"a/b": torch.ones(2), "a%2Fb": torch.zeros(2)},
        "same_tensor_twice": [torch.arange(3)] * 2,
        "half": torch.ones(2, dtype=torch.float16),
    }
    save_training_state(tmp_path / "s.safetensors", state)
    got = load_training_state(tmp_path / "s.safetensors")
    assert got["ints"] == {0: "a", 1: {"nested": (1, 2.5, None)}, -3: []}
    assert list(got["mixed_keys"].items()) == list(state["mixed_keys"].items())
    assert got["tag_like"] == state["tag_like"]
    assert math.isnan(got["floats"][0]) and got["floats"][1:] == state["floats"][1:]
    assert got["bigint"] == 2**100 and got["bytes"] == state["bytes"]
    arr = got["np"]["arr"]
    assert arr.dtype == np.dtype(">i2") and np.array_equal(arr, state["np"]["arr"])
    assert type(got["np"]["f64"]) is np.float64 and got["np"]["f64"] == 0.25
    assert type(got["np"]["i32"]) is np.int32 and got["np"]["i32"] == -5
    assert got["empty"]["t"].shape == (0, 3) and got["empty"]["d"] == {} and got["empty"]["tup"] == ()
    assert torch.equal(got["slash/key"]["a/b"], torch.ones(2))
    assert torch.equal(got["slash/key"]["a%2Fb"], torch.zeros(2))
    assert all(torch.equal(t, torch.arange(3)) for t in got["same_tensor_twice"])
    assert got["half"].dtype == torch.float16


def test_training_state_overwrites_atomically_and_kinds_are_checked(tmp_path, monkeypatch):
    import safetensors.torch

    path = save_training_state(tmp_path / "s.safetensors", {"step": 1})
    save_training_state(path, {"step": 2})  # overwriting its own state file is the normal case
    assert load_training_state(path)["step"] == 2

    def broken(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(GencliError):
        save_training_state(path, {"step": 3})
    monkeypatch.undo()
    assert load_training_state(path)["step"] == 2 and _leftovers(tmp_path) == []

    model = save_checkpoint(tmp_path / "model.safetensors", {"w": torch.zeros(1)}, {"family": "a"})
    with pytest.raises(InputError, match="not a gencli training state"):
        load_training_state(model)
    with pytest.raises(InputError, match="is a training state"):
        load_checkpoint(path)
    with pytest.raises(InputError, match="no such training state file"):
        load_training_state(tmp_path / "nope.safetensors")
    with pytest.raises(TypeError, match="cannot store a object"):
        save_training_state(tmp_path / "bad.safetensors", {"x": object()})
