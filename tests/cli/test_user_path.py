"""What a new user hit (issue "As a user finds it"): reproducible training, one-line offline
answers, hostile checkpoints and numbers, a user's own cache files, progress every step, threads
under load, one writer per run folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_support import _isolated, cli, gencli_proc, make_tiny_checkpoint, tiny_ckpt  # noqa: F401
from safetensors import safe_open

TINY = json.dumps({"unet": {"block_out_channels": [16, 32], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
                            "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 8}})


def _train(capsysbinary, out: str, steps: int, *extra: str):
    return cli(capsysbinary, "train", "ddpm", "--data", "synthetic:16", "--image-size", "8", "--steps", str(steps),
               "--batch-size", "4", "--config", TINY, "--out", out, "--sample-n", "0", *extra)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_the_same_seed_trains_the_same_weights(capsysbinary, tmp_path):
    for out in ("a", "b"):
        assert _train(capsysbinary, out, 4, "--seed", "3").code == 0
    r = _train(capsysbinary, "c", 2, "--seed", "3")
    assert r.code == 0, r.err
    r = cli(capsysbinary, "train", "ddpm", "--out", "c", "--steps", "4", "--resume")
    assert r.code == 0, r.err
    a, b, c = (_weights(tmp_path / d / "model.safetensors") for d in ("a", "b", "c"))
    assert all(torch.equal(a[k], b[k]) for k in a), "two runs with --seed 3 differ"
    assert all(torch.equal(a[k], c[k]) for k in a), "2 steps + --resume to 4 differs from 4 steps"
    assert _train(capsysbinary, "d", 4, "--seed", "4").code == 0
    d = _weights(tmp_path / "d" / "model.safetensors")
    assert not all(torch.equal(a[k], d[k]) for k in a)


def test_no_network_is_one_line_within_seconds():
    # a closed port on this machine: huggingface_hub would retry for ~20 s and log each retry
    env = {"HF_HUB_OFFLINE": "0", "GENCLI_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}
    t0 = time.monotonic()
    r = gencli_proc("sample", "ddpm", "--weights", "someone/some-ddpm", "-o", "x.png", env=env)
    assert time.monotonic() - t0 < 60
    r.assert_error(1, "could not be reached", "someone/some-ddpm", "HF_HUB_OFFLINE=1")
    assert "Retrying" not in r.err


def test_an_absurd_config_is_refused_before_any_allocation(capsysbinary, tmp_path):
    path = make_tiny_checkpoint(tmp_path / "tiny.safetensors")
    with safe_open(str(path), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    cfg["unet"]["block_out_channels"] = [65536, 65536]
    meta["config"] = json.dumps(cfg)
    from safetensors.torch import save_file

    save_file(tensors, str(tmp_path / "hostile.safetensors"), metadata=meta)
    r = cli(capsysbinary, "sample", "ddpm", "--weights", tmp_path / "hostile.safetensors", "-o", "x.png")
    r.assert_error(1, "hostile.safetensors", "do not fit")
    shapes = dict(tensors)
    key = next(k for k in shapes if k.endswith("conv_in.weight"))
    shapes[key] = torch.zeros(3, *shapes[key].shape[1:])
    save_file(shapes, str(tmp_path / "shape.safetensors"), metadata=json.loads(json.dumps(f_meta(path))))
    r = cli(capsysbinary, "sample", "ddpm", "--weights", tmp_path / "shape.safetensors", "-o", "y.png")
    r.assert_error(1, "shape.safetensors", key, "shape")


def f_meta(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return f.metadata()


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_numeric_options_are_checked_up_front(capsysbinary, tiny_ckpt, value):  # noqa: F811
    r = cli(capsysbinary, "sample", "ddpm", "--weights", tiny_ckpt, "--guidance", value, "-o", "x.png")
    r.assert_error(2, "--guidance")
    assert not Path("x.png").exists()


def test_a_file_the_user_placed_in_the_cache_is_kept(tmp_path, monkeypatch):
    from gencli import registry
    from gencli.errors import InputError
    from gencli.paths import download_path

    monkeypatch.setenv("GENCLI_CACHE", str(tmp_path / "cache"))
    spec = registry.get_family("cyclegan")
    ref = spec.checkpoint("horse2zebra")
    placed = download_path("cyclegan", ref.source.partition(":")[2])
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"not a torch file")
    with pytest.raises(InputError) as e:
        registry.load_model("cyclegan", "horse2zebra")
    assert "placed" in str(e.value) and "downloaded" not in str(e.value).split("(")[0]
    assert placed.read_bytes() == b"not a torch file"


def test_training_progress_is_reported_every_step(tmp_path):
    from gencli import registry
    from gencli.training import run as runs
    from gencli.training.trainer import Reporter

    seen = []

    class Spy(Reporter):
        def step(self, step, metrics):
            seen.append((step, dict(metrics)))

    spec = registry.get_family("ddpm")
    prepared = runs.prepare(spec, tmp_path / "run", steps=3, data="synthetic:8", image_size=8,
                            config=spec.tiny_config, reporter=Spy(),
                            train={"batch_size": 2, "log_every": 50, "sample_n": 0})
    prepared.trainer.fit()
    assert [s for s, _ in seen] == [1, 2, 3] and all("loss" in m for _, m in seen)


def test_default_threads_leave_busy_cores_alone(monkeypatch):
    from gencli import runtime

    assert runtime.default_threads(cpus=2, busy=0) == 2
    assert runtime.default_threads(cpus=2, busy=1) == 1  # one core busy elsewhere
    assert runtime.default_threads(cpus=2, busy=7) == 1
    assert runtime.default_threads(cpus=8, busy=3) == 5
    # the runnable count of /proc/loadavg, less this process, the least of the looks
    looks = iter(["0.5 0.4 0.3 3/100 1\n", "0.5 0.4 0.3 2/100 1\n", "0.5 0.4 0.3 4/100 1\n"])
    import builtins
    import io as io_mod

    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: io_mod.StringIO(next(looks))
                        if path == "/proc/loadavg" else real_open(path, *a, **k))
    assert runtime.busy_cpus(samples=3, interval=0) == 1
    monkeypatch.setattr(builtins, "open", real_open)
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("GENCLI_THREADS", "1")
        assert runtime.set_threads() == 1 and torch.get_num_threads() == 1
        assert runtime.set_threads(2) == 2  # --threads wins over the variable
        monkeypatch.setenv("GENCLI_THREADS", "many")
        from gencli.errors import UsageError

        with pytest.raises(UsageError, match="GENCLI_THREADS"):
            runtime.set_threads()
    finally:
        torch.set_num_threads(before)


def test_a_run_folder_has_one_writer(capsysbinary, tmp_path):
    assert _train(capsysbinary, "run", 2).code == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from gencli.training.run import locked\n"
         "with locked(Path('run'), 'run'):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        assert holder.stdout.readline().strip() == b"held"
        r = cli(capsysbinary, "train", "ddpm", "--out", "run", "--steps", "4", "--resume")
        r.assert_error(1, "run is in use", f"process {holder.pid}")
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed holder releases the lock by itself
        holder.wait()
    r = cli(capsysbinary, "train", "ddpm", "--out", "run", "--steps", "4", "--resume")
    assert r.code == 0, r.err


def test_a_symlink_loop_is_followed_once(tmp_path):
    from PIL import Image

    from gencli.io.images import list_images

    (tmp_path / "data" / "sub").mkdir(parents=True)
    Image.new("L", (4, 4)).save(tmp_path / "data" / "sub" / "a.png")
    os.symlink(tmp_path / "data", tmp_path / "data" / "sub" / "loop")
    assert list_images(str(tmp_path / "data")) == [str(tmp_path / "data" / "sub" / "a.png")]


def test_a_broken_statistics_file_is_one_line(capsysbinary, tmp_path):
    Path("bad.npz").write_text("not an archive")
    r = cli(capsysbinary, "evaluate", "fid", "bad.npz", "bad.npz", "--features", "fmnist")
    r.assert_error(1, "bad.npz", "not a zip archive")
    assert "pickle" not in r.err


def test_an_absurd_grid_is_refused_before_sampling(capsysbinary, tiny_ckpt):  # noqa: F811
    r = cli(capsysbinary, "sample", "ddpm", "--weights", tiny_ckpt, "-n", "100000000", "-o", "grid.png")
    r.assert_error(2, "too large for one image", "-o DIR/")
