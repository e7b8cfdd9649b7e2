"""Shared helpers for the CLI tests (imported by tests/test_cli_*.py; holds no tests itself).

``cli(capsysbinary, *args)`` runs gencli in-process through ``gencli.cli.app.run`` -- the same
error handling as the console script -- and returns ``(exit code, stdout bytes, stderr text)``.
``gencli_proc(*args)`` runs ``python -m gencli`` in a subprocess for checks about imports, exit
codes and stderr of the real program.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TINY_UNET = {
    "block_out_channels": [16, 32],
    "down_block_types": ["DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D"],
    "norm_num_groups": 8,
}
TINY_OVERRIDES = {
    "unet": TINY_UNET,
    "scheduler": {"num_train_timesteps": 100},
    "sampling": {"sampler": "ddpm", "steps": 20, "guidance": 1.0, "spacing": "leading", "eta": 0.0},
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Result:
    code: int
    out: bytes
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def assert_error(self, code: int, *needles: str) -> str:
        """Exit code ``code``, exactly one stderr line starting with 'gencli:', no traceback."""
        assert self.code == code, (self.code, self.err)
        assert "Traceback" not in self.err, self.err
        assert len(self.err_lines) == 1, self.err
        line = self.err_lines[0]
        assert line.startswith("gencli: "), line
        for needle in needles:
            assert needle in line, line
        return line


def cli(capsysbinary: pytest.CaptureFixture, *args: str) -> Result:
    from gencli.cli.app import run

    capsysbinary.readouterr()
    code = run([str(a) for a in args])
    captured = capsysbinary.readouterr()
    return Result(code, captured.out, captured.err.decode("utf-8", "replace"))


def gencli_proc(*args: str, env: dict[str, str] | None = None, code: str | None = None,
                timeout: float = 120) -> Result:
    cmd = [sys.executable, "-c", code] if code is not None else [sys.executable, "-m", "gencli", *map(str, args)]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "GENCLI_OFFLINE": "1", **(env or {})}
    full_env.pop("GENCLI_DEBUG", None)
    proc = subprocess.run(cmd, capture_output=True, env=full_env, timeout=timeout, stdin=subprocess.DEVNULL)
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    assert data[:8] == PNG_SIGNATURE
    with Image.open(io.BytesIO(data)) as im:
        return im.size


def grid_size(n: int, nrow: int, side: int, padding: int = 2) -> tuple[int, int]:
    rows = -(-n // nrow)
    return nrow * (side + padding) + padding, rows * (side + padding) + padding


def make_tiny_checkpoint(path: Path, num_classes: int | None = 3, size: int = 8) -> Path:
    import torch

    from gencli.checkpoints import save_checkpoint
    from gencli.models.diffusion.ddpm import DiffusionModel

    cfg = DiffusionModel.config_for_data(size, 1, num_classes, TINY_OVERRIDES)
    torch.manual_seed(0)
    model = DiffusionModel.from_config(cfg)
    names = ["square", "circle", "triangle", "cross"][: num_classes or 0]
    save_checkpoint(path, model.state_dict(),
                    {"family": "ddpm", "config": model.config, "dataset": "tiny", "image_size": size,
                     "channels": 1, "class_names": names}, force=True)
    return path


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("GENCLI_CACHE", str(tmp_path / "gencli-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("GENCLI_DEBUG", raising=False)
    monkeypatch.delenv("GENCLI_QUIET", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A class-conditional (3 classes) 8x8 grey DDPM checkpoint with random weights."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="session")
def tiny_uncond(tmp_path_factory) -> Path:
    """An unconditional 8x8 grey DDPM checkpoint with random weights."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "uncond.safetensors", num_classes=None)
