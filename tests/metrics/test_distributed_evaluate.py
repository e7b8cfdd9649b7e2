"""`gencli evaluate` under torchrun (2 CPU processes, gloo): each rank samples and extracts its
share of the images; the statistics are merged exactly (float64 count/mean/centred sums) and the
features gathered in index order, so every metric equals the 1-process value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gencli.metrics.stats import RunningStats

GAN = json.dumps({"generator": {"width": 8, "init": "default"}, "discriminator": {"width": 4}, "z_dim": 8})


def _run(cwd: Path, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GENCLI_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def test_merged_states_equal_streaming_everything():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(301, 5)) * [1, 2, 3, 4, 5] + 7
    whole = RunningStats()
    whole.update(x)
    merged = RunningStats()
    for part in (x[:150], x[150:151], x[151:]):
        r = RunningStats()
        r.update(part)
        merged.merge_state(*r.state())
    merged.merge_state(*RunningStats().state())  # an empty share changes nothing
    a, b = whole.finalize(), merged.finalize()
    assert a.n == b.n == 301
    np.testing.assert_allclose(b.mu, x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(b.sigma, np.cov(x, rowvar=False), rtol=1e-12)
    np.testing.assert_allclose(a.sigma, b.sigma, rtol=1e-12)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_two_ranks_give_the_one_process_metrics(tmp_path):
    _run(tmp_path, "-m", "gencli", "train", "dcgan", "--data", "synthetic:16", "--image-size", "28", "--steps", "1",
         "--out", "run", "--config", GAN, "--sample-n", "0", "-q")
    _run(tmp_path, "-m", "gencli", "train", "dcgan", "--data", "synthetic:16", "--image-size", "28", "--steps", "1",
         "--out", "other", "--config", GAN, "--sample-n", "0", "-q", "--seed", "1")
    _run(tmp_path, "-m", "gencli", "sample", "dcgan", "--weights", "other/model.safetensors", "-n", "41", "-o", "real/",
         "-q")
    args = ["-m", "gencli", "evaluate", "all", "real/", "--model", "dcgan", "--model-weights", "run/model.safetensors",
            "-n", "37", "--features", "fmnist", "--kid-subset-size", "10", "--json", "--no-cache"]
    one = json.loads(_run(tmp_path, *args))
    two = json.loads(_run(tmp_path, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args))
    assert one["fid"] > 0.1 and one["kid_mean"] > 1e-3  # the sets differ: the comparisons are not of zeros
    assert two["fid"] == pytest.approx(one["fid"], rel=1e-9, abs=0)
    for key in ("kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall"):
        assert two[key] == pytest.approx(one[key], rel=1e-6, abs=1e-12), key
    assert [i["n"] for i in two["inputs"]] == [41, 37]
