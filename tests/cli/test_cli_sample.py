"""gencli sample / interpolate / translate on a tiny random-weight DDPM checkpoint."""

from __future__ import annotations

import json

import pytest
from cli_support import (_isolated, cli, grid_size, png_size,  # noqa: F401
                              tiny_ckpt, tiny_uncond)

FAST = ("--steps", "3")


def sample(capsysbinary, ckpt, *args):
    return cli(capsysbinary, "sample", "ddpm", "--weights", ckpt, *FAST, *args)


def test_sample_png_grid_one_class_per_column(capsysbinary, tiny_ckpt, tmp_path):
    r = sample(capsysbinary, tiny_ckpt, "-n", "6", "-o", "grid.png")
    assert r.code == 0, r.err
    assert r.out == b""  # nothing on stdout unless asked
    data = (tmp_path / "grid.png").read_bytes()
    assert png_size(data) == grid_size(6, 3, 8)  # 3 classes -> 3 columns
    assert len(r.err_lines) == 1 and r.err_lines[0].startswith("wrote grid.png (6 images, ddpm sampler=ddpm steps=3 ")
    r = sample(capsysbinary, tiny_ckpt, "-n", "4", "--nrow", "4", "-o", "row.png", "--quiet")
    assert r.code == 0 and r.err == ""
    r = cli(capsysbinary, "-q", "sample", "ddpm", "--weights", tiny_ckpt, *FAST, "-n", "1", "-o", "q.png")
    assert r.code == 0 and r.err == ""  # the global --quiet
    assert png_size((tmp_path / "row.png").read_bytes()) == grid_size(4, 4, 8)


def test_sample_to_folder_and_json(capsysbinary, tiny_ckpt, tmp_path):
    r = sample(capsysbinary, tiny_ckpt, "-n", "3", "-o", "out/", "--json", "--batch-size", "2")
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["outputs"] == [f"out/{i:06d}.png" for i in range(3)]
    assert summary["model"] == "ddpm" and summary["steps"] == 3 and summary["sampler"] == "ddpm"
    assert summary["batch_size"] == 2 and summary["seconds"] >= 0
    for i in range(3):
        assert png_size((tmp_path / "out" / f"{i:06d}.png").read_bytes()) == (8, 8)


def test_sample_to_stdout_explicit_and_by_default(capsysbinary, tiny_ckpt):
    r = sample(capsysbinary, tiny_ckpt, "-n", "2", "-o", "-", "--class", "1", "--grid")
    assert r.code == 0, r.err
    assert png_size(r.out) == grid_size(2, 2, 8)
    r2 = sample(capsysbinary, tiny_ckpt, "-n", "2", "--class", "1", "--grid")  # stdout is not a terminal here
    assert r2.code == 0 and r2.out == r.out


def test_several_images_to_stdout_are_a_stream_of_pngs(capsysbinary, tiny_ckpt, tmp_path):
    from gencli.io.stdin import split_png_stream

    r = sample(capsysbinary, tiny_ckpt, "-n", "3", "-b", "2", "-o", "-")
    assert r.code == 0, r.err
    parts = split_png_stream(r.out)
    assert len(parts) == 3 and all(png_size(p) == (8, 8) for p in parts)  # images, not a grid
    assert "3 PNGs to stdout" in r.err
    folder = sample(capsysbinary, tiny_ckpt, "-n", "3", "-b", "2", "-o", "each/")
    assert folder.code == 0
    assert parts == [(tmp_path / "each" / f"{i:06d}.png").read_bytes() for i in range(3)]
    one = sample(capsysbinary, tiny_ckpt, "-n", "1", "-o", "-")
    assert len(split_png_stream(one.out)) == 1 and png_size(one.out) == (8, 8)  # `| display` still works


def test_seed_reproducibility(capsysbinary, tiny_uncond):
    a = sample(capsysbinary, tiny_uncond, "-n", "2", "--seed", "7", "-o", "-").out
    b = sample(capsysbinary, tiny_uncond, "-n", "2", "--seed", "7", "-o", "-").out
    c = sample(capsysbinary, tiny_uncond, "-n", "2", "--seed", "8", "-o", "-").out
    assert a == b and a != c
    # image i depends on (seed, i) alone: the same files whatever the batch size
    for b in ("1", "2"):
        assert sample(capsysbinary, tiny_uncond, "-n", "3", "--seed", "7", "-b", b, "-o", f"b{b}/").code == 0
    from pathlib import Path

    assert [Path(f"b1/{i:06d}.png").read_bytes() for i in range(3)] == \
        [Path(f"b2/{i:06d}.png").read_bytes() for i in range(3)]


def test_image_i_is_the_same_under_torchrun(tiny_uncond, tmp_path):
    """`torchrun -m gencli sample -o DIR/`: each of 2 ranks writes its share, the same files as 1 process."""
    import os
    import subprocess
    import sys

    args = ["sample", "ddpm", "--weights", str(tiny_uncond), "--steps", "3", "-n", "5", "-b", "2", "--seed", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    one = subprocess.run([sys.executable, "-m", "gencli", *args, "-o", "one/"], cwd=tmp_path, env=env,
                         capture_output=True, timeout=300)
    assert one.returncode == 0, one.stderr.decode()
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "gencli", *args, "-o", "two/"], cwd=tmp_path, env=env, capture_output=True,
                         timeout=300)
    assert two.returncode == 0, two.stderr.decode()
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir()) and len(names) == 5
    assert all((tmp_path / "one" / n).read_bytes() == (tmp_path / "two" / n).read_bytes() for n in names)


def test_ddim_family_and_sampler_options(capsysbinary, tiny_ckpt):
    r = cli(capsysbinary, "sample", "ddim", "--weights", tiny_ckpt, "--steps", "2", "-n", "1", "--eta", "0.5",
            "--spacing", "trailing", "--json", "-o", "d.png")
    assert r.code == 0, r.err
    assert json.loads(r.out)["sampler"] == "ddim"
    r = sample(capsysbinary, tiny_ckpt, "-n", "1", "--eta", "0.5", "-o", "e.png")
    r.assert_error(2, "--eta")
    r = sample(capsysbinary, tiny_ckpt, "-n", "1", "--variance", "fixed_large", "--precision", "bf16", "-o", "v.png")
    assert r.code == 0, r.err


@pytest.mark.parametrize("native", [False, True])
def test_emulated_bf16_is_warned_about_once(capsysbinary, tiny_ckpt, monkeypatch, native):
    from gencli import runtime

    monkeypatch.setattr(runtime, "cpu_has_native_half", lambda precision: native)
    runtime._warn_emulated.cache_clear()
    r = sample(capsysbinary, tiny_ckpt, "-n", "4", "--batch-size", "2", "--precision", "bf16",
               "--device", "cpu", "-o", "b.png")
    assert r.code == 0, r.err
    assert r.err.count("no native bf16") == (0 if native else 1)
    runtime._warn_emulated.cache_clear()


def test_init_noise_reproduces_exactly(capsysbinary, tiny_ckpt, tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"noise": torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))}, "noise.safetensors")
    a = sample(capsysbinary, tiny_ckpt, "--init-noise", "noise.safetensors", "--sampler", "ddim", "-o", "-",
               "--grid")
    b = sample(capsysbinary, tiny_ckpt, "--init-noise", "noise.safetensors", "--sampler", "ddim", "--seed", "5",
               "-o", "-", "--grid")
    assert a.code == b.code == 0, a.err + b.err
    assert a.out == b.out and png_size(a.out) == grid_size(2, 2, 8)  # N comes from the file

    save_file({"other": torch.zeros(2, 1, 8, 8)}, "nokey.safetensors")
    save_file({"noise": torch.zeros(2, 3, 8, 8)}, "shape.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    sample(capsysbinary, tiny_ckpt, "--init-noise", "nokey.safetensors", "-o", "x.png").assert_error(1, "'noise'")
    sample(capsysbinary, tiny_ckpt, "--init-noise", "shape.safetensors", "-o", "x.png").assert_error(1, "(2, 3, 8, 8)")
    sample(capsysbinary, tiny_ckpt, "--init-noise", "junk.safetensors", "-o", "x.png").assert_error(1, "junk")
    sample(capsysbinary, tiny_ckpt, "--init-noise", "absent.safetensors", "-o", "x.png").assert_error(1, "absent")
    sample(capsysbinary, tiny_ckpt, "--init-noise", "noise.safetensors", "-n", "3", "-o", "x.png").assert_error(2, "-n 3")
    assert not (tmp_path / "x.png").exists()


def test_refuses_to_overwrite_without_force(capsysbinary, tiny_ckpt, tmp_path):
    target = tmp_path / "keep.png"
    target.write_bytes(b"precious")
    sample(capsysbinary, tiny_ckpt, "-n", "1", "-o", "keep.png").assert_error(2, "keep.png exists; pass --force")
    assert target.read_bytes() == b"precious"
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "000001.png").write_bytes(b"old")
    sample(capsysbinary, tiny_ckpt, "-n", "2", "-o", "dir/").assert_error(2, "000001.png exists")
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["000001.png"]
    r = sample(capsysbinary, tiny_ckpt, "-n", "1", "-o", "keep.png", "--force")
    assert r.code == 0 and png_size(target.read_bytes()) == (8, 8)


@pytest.mark.parametrize("args, code, needle", [
    (["--class", "3"], 2, "--class 3 is out of range: this model knows classes 0..2"),
    (["--class", "1,x"], 2, "'x' is not an integer"),
    (["-n", "0"], 2, "-n must be at least 1"),
    (["-o", "bad.xyz"], 2, "unknown image extension"),
])
def test_sample_usage_errors(capsysbinary, tiny_ckpt, args, code, needle):
    r = sample(capsysbinary, tiny_ckpt, *(["-o", "x.png"] if "-o" not in args else []), *args)
    r.assert_error(code, needle)


def test_class_names_and_lists(capsysbinary, tiny_ckpt):
    r = sample(capsysbinary, tiny_ckpt, "-n", "4", "--class", "circle,0", "-o", "-", "--grid")
    assert r.code == 0 and png_size(r.out) == grid_size(4, 2, 8)


def test_class_on_unconditional_model(capsysbinary, tiny_uncond):
    sample(capsysbinary, tiny_uncond, "--class", "1", "-o", "x.png").assert_error(2, "not class-conditional")


def test_unknown_model_and_checkpoint(capsysbinary):
    cli(capsysbinary, "sample", "nope", "-o", "x.png").assert_error(2, "unknown model 'nope'; known: ", "ddpm, ddim")
    cli(capsysbinary, "sample", "ddpm", "imagenet", "-o", "x.png").assert_error(
        2, "ddpm has no checkpoint named 'imagenet'", "fashion-mnist")


def test_missing_weights_path(capsysbinary, tmp_path):
    r = cli(capsysbinary, "sample", "ddpm", "--weights", "./nothing/here.safetensors", "-o", "x.png")
    r.assert_error(1, "here.safetensors")


def test_wrong_family_checkpoint(capsysbinary, tmp_path):
    import torch

    from gencli.checkpoints import save_checkpoint

    save_checkpoint("gan.safetensors", {"w": torch.zeros(1)}, {"family": "dcgan", "config": {}})
    cli(capsysbinary, "sample", "ddpm", "--weights", "gan.safetensors", "-o", "x.png").assert_error(1, "dcgan")


# --- interpolate -------------------------------------------------------------------------------
def test_interpolate_gif_and_strip(capsysbinary, tiny_ckpt, tmp_path):
    from PIL import Image

    base = ("interpolate", "ddpm", "--weights", tiny_ckpt, "--steps", "2", "--seeds", "0,1", "--frames", "5")
    r = cli(capsysbinary, *base, "-o", "anim.gif")
    assert r.code == 0, r.err
    with Image.open(tmp_path / "anim.gif") as im:
        assert im.n_frames == 5 and im.size == (8, 8)
    r = cli(capsysbinary, *base, "-o", "pp.gif", "--pingpong", "--class", "2")
    assert r.code == 0, r.err
    with Image.open(tmp_path / "pp.gif") as im:
        assert im.n_frames == 8
    r = cli(capsysbinary, *base, "-o", "strip.png")
    assert r.code == 0, r.err
    assert png_size((tmp_path / "strip.png").read_bytes()) == grid_size(5, 5, 8)
    cli(capsysbinary, *base, "-o", "strip.png").assert_error(2, "strip.png exists")
    r = cli(capsysbinary, "interpolate", "ddpm", "--weights", tiny_ckpt, "--seeds", "3", "-o", "x.gif")
    r.assert_error(2, "at least two seeds")
    cli(capsysbinary, *base, "--class", "9", "-o", "y.png").assert_error(2, "out of range")


def test_interpolate_end_frame_matches_ddim_sample(capsysbinary, tiny_uncond, tmp_path):
    r = cli(capsysbinary, "interpolate", "ddpm", "--weights", tiny_uncond, "--steps", "2", "--seeds", "4,5",
            "--frames", "3", "-o", "frames/")
    assert r.code == 0, r.err
    r = sample(capsysbinary, tiny_uncond, "-n", "1", "--seed", "4", "--sampler", "ddim", "--eta", "0", "--steps",
               "2", "-o", "end.png")
    assert r.code == 0, r.err
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(tmp_path / "frames" / "000000.png"), dtype=np.int16)
    b = np.asarray(Image.open(tmp_path / "end.png"), dtype=np.int16)
    assert np.abs(a - b).max() <= 1  # the same start noise (batching may flip a rounding)


def test_compile_flag_compiles_the_sampling_network(capsysbinary, tiny_ckpt, monkeypatch):
    import torch

    compiled = []

    def fake_compile(fn, **kw):
        compiled.append(kw)
        return fn  # the real compiler is exercised by the slow test below

    monkeypatch.setattr(torch, "compile", fake_compile)
    r = sample(capsysbinary, tiny_ckpt, "-n", "2", "-o", "c.png", "--compile")
    assert r.code == 0, r.err
    assert compiled == [{"dynamic": False}]


@pytest.mark.slow
def test_compiled_sampling_equals_eager():
    import torch

    from gencli import registry

    spec = registry.get_family("ddpm")
    cls = spec.load_class()
    torch.manual_seed(0)
    model = cls.from_config(cls.config_for_data(8, 1, None, spec.tiny_config)).eval()
    eager = model.generate(2, seed=1, sampler="ddim", steps=3)
    model.compile_for_sampling()
    torch.testing.assert_close(model.generate(2, seed=1, sampler="ddim", steps=3), eager, rtol=1e-4, atol=1e-4)
