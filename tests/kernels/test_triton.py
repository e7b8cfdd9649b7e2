"""The Triton kernels (gencli.kernels.triton_ops) against the torch code they replace.

Triton decides between compiling and interpreting when it is imported, so the cases
(tests/kernels/triton_cases.py) run in a child pytest: with ``TRITON_INTERPRET=1`` and
``GENCLI_TRITON=interpret`` (CPU tensors through the interpreter) everywhere, and compiled on CUDA
where a GPU is present.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="Triton is not installed (pip install triton)")

CASES = Path(__file__).with_name("triton_cases.py")


def _child(env: dict[str, str]) -> None:
    env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)],
                          env=env, capture_output=True, text=True, timeout=600, cwd=CASES.parent)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert " passed" in last and "skipped" not in last and "deselected" not in last, proc.stdout[-2000:]


def test_triton_kernels_in_the_interpreter():
    _child({"TRITON_INTERPRET": "1", "GENCLI_TRITON": "interpret", "CUDA_VISIBLE_DEVICES": ""})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_kernels_compiled_on_cuda():
    _child({"TRITON_INTERPRET": "0", "GENCLI_TRITON": ""})
