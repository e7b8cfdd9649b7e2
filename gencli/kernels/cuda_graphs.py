"""CUDA graphs for a fixed-shape call repeated many times (the network of a sampling loop).

:class:`GraphedCall` wraps ``fn(*tensors)``. On CUDA tensors it warms ``fn`` up on a side stream,
captures one call into a ``torch.cuda.CUDAGraph`` with static input buffers, and from then on
copies each call's inputs into those buffers and replays the graph: one launch per step instead of
hundreds of small kernel launches (what dominates a small UNet at small batches on a GPU). A new
input shape, dtype or device is captured anew. The output is the graph's static output buffer:
use it before the next call (a sampling step does), or clone it.

Anything else runs ``fn`` as it is: CPU tensors, ``GENCLI_CUDA_GRAPHS=0``, or a capture that
fails (an op that cannot be captured, e.g. a host sync): then a warning says so once and the call
stays eager.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable

import torch


def wanted(device: torch.device) -> bool:
    """Whether sampling on ``device`` should use CUDA graphs (CUDA, unless GENCLI_CUDA_GRAPHS=0)."""
    return device.type == "cuda" and os.environ.get("GENCLI_CUDA_GRAPHS", "1") != "0"


class GraphedCall:
    def __init__(self, fn: Callable[..., torch.Tensor], warmup: int = 3):
        self.fn = fn
        self.warmup = warmup
        self.key: Any = None
        self.graph: Any = None
        self.static_in: list[torch.Tensor] = []
        self.static_out: torch.Tensor | None = None
        self.failed = False

    @staticmethod
    def _key(args: tuple[torch.Tensor, ...]) -> tuple:
        return tuple((tuple(a.shape), a.dtype, a.device) for a in args)

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        if self.failed or not args or not all(isinstance(a, torch.Tensor) and a.is_cuda for a in args):
            return self.fn(*args)
        key = self._key(args)
        if key != self.key:
            try:
                self._capture(args)
            except Exception as e:  # noqa: BLE001 - any capture failure: stay eager, say so once
                self.failed, self.graph = True, None
                warnings.warn(f"CUDA graph capture failed ({type(e).__name__}: {e}); sampling runs eagerly "
                              "(GENCLI_CUDA_GRAPHS=0 skips the attempt)", RuntimeWarning, stacklevel=2)
                return self.fn(*args)
            self.key = key
        for buf, a in zip(self.static_in, args):
            buf.copy_(a)
        self.graph.replay()
        return self.static_out

    def _capture(self, args: tuple[torch.Tensor, ...]) -> None:
        self.static_in = [a.clone() for a in args]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):  # lazy initialisation (cuBLAS/cuDNN handles) happens here
                self.fn(*self.static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.static_out = self.fn(*self.static_in)
        self.graph = graph
