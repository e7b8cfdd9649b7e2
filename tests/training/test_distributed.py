"""gencli train on 2 CPU processes (torchrun's launcher, gloo): the same weights as 1 process with
the same global batch (within fp32 reduction-order tolerance), and an exact resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

# plain MSE on epsilon: the rank checks below are about batches and gradient averaging, and this loss
# keeps the fp32 summation-order difference of one vs two ranks under 1e-5 (the default, Min-SNR
# weighted v-prediction, measured 1.1e-5)
TINY = json.dumps({"unet": {"block_out_channels": [16, 32], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
                            "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 8},
                   "scheduler": {"prediction_type": "epsilon"}, "min_snr_gamma": None})
BASE = ["train", "ddpm", "--data", "synthetic:16", "--image-size", "8", "--batch-size", "4", "--config", TINY,
        "--sample-n", "0", "--log-every", "1", "-q"]


def _gencli(cwd: Path, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GENCLI_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-m", "gencli", *args], cwd=cwd, env=env, capture_output=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode()


def _weights(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _relative(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest relative error ||a - b|| / ||a|| over the tensors."""
    return max(float((a[k] - b[k]).norm() / (a[k].norm() + 1e-12)) for k in a)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_two_ranks_equal_one_process_and_resume_exactly(tmp_path):
    _gencli(tmp_path, *BASE, "--steps", "4", "--out", "one")
    _gencli(tmp_path, *BASE, "--steps", "4", "--out", "two", "--nproc", "2")
    _gencli(tmp_path, *BASE, "--steps", "2", "--out", "resumed", "--nproc", "2")
    _gencli(tmp_path, "train", "ddpm", "--steps", "4", "--out", "resumed", "--resume", "--nproc", "2", "-q")
    one, two, resumed = (_weights(tmp_path / d) for d in ("one", "two", "resumed"))
    assert one.keys() == two.keys()
    assert _relative(one, two) < 1e-5  # the same global batches, noise and mean gradient
    assert all(torch.equal(two[k], resumed[k]) for k in two)  # 2 + resume to 4 == 4, bit for bit
    log = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # rank 0 alone writes the log
    ref = [json.loads(line)["loss"] for line in (tmp_path / "one" / "log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in log] == pytest.approx(ref, rel=1e-4)  # logged: the mean over the ranks


def test_the_global_batch_must_split_over_the_ranks(monkeypatch):
    from gencli.errors import UsageError
    from gencli.training.distributed import Group

    monkeypatch.setenv("WORLD_SIZE", "1")
    g = Group()
    assert not g.active and torch.equal(g.shard(torch.arange(5)), torch.arange(5))
    g.world, g.rank, g.active = 2, 1, True  # the arithmetic of rank 1 of 2
    assert g.shard(torch.arange(6)).tolist() == [3, 4, 5]
    with pytest.raises(UsageError, match="does not split evenly over 2 ranks"):
        g.shard(torch.arange(5))


GAN_TINY = {"generator": {"width": 4, "norm": "none"}, "discriminator": {"width": 4}, "z_dim": 8}


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
@pytest.mark.parametrize("family,extra", [
    ("wgan-gp", ["--n-critic", "1", "--augment", "color,translation,cutout", "--instance-noise", "0.1"]),
    ("stylegan", []),
])
def test_gans_train_the_same_on_two_ranks(tmp_path, family, extra):
    """Two optimisers, and every random draw of a GAN step (z, the penalty's alphas, augmentation,
    instance noise, style mixing, layer noise) comes from the step context: 2 ranks == 1 process.
    (stylegan's tracked mean w is a running mean of each process's own batch: not compared.)"""
    cfg = dict(GAN_TINY)
    if family == "stylegan":
        cfg["generator"] = {"width": 4, "w_dim": 8}
    args = ["train", family, "--data", "synthetic:16", "--image-size", "8", "--batch-size", "4", "--unconditional",
            "--config", json.dumps(cfg), "--sample-n", "0", "-q", "--steps", "3", *extra]
    _gencli(tmp_path, *args, "--out", "one")
    _gencli(tmp_path, *args, "--out", "two", "--nproc", "2")
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert one.keys() == two.keys()
    one.pop("G.w_avg", None), two.pop("G.w_avg", None)
    assert _relative(one, two) < 1e-5
