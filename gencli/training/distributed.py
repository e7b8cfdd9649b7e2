"""Training on several processes with PyTorch's own engine (torch.distributed, launched by torchrun).

``torchrun --nproc-per-node N -m gencli train ...`` (or ``gencli train ... --nproc N``, which starts
torchrun's launcher for one node) sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; :class:`Group` then
joins the process group (gloo on the CPU, nccl on CUDA). The trainer gives each rank a disjoint,
contiguous shard of every global batch (``--batch-size`` stays the global batch), averages the
gradients of each optimiser step over the ranks (one flat all-reduce per step and optimiser),
takes every stop decision collectively (a NaN or Ctrl-C on one rank stops all after the same step),
and lets only rank 0 write checkpoints, logs, previews and progress.

The gradients are averaged by the shared trainer rather than by wrapping the network in
``DistributedDataParallel``: families call their sub-networks directly inside ``train_step`` and
GANs alternate two optimisers, which DDP's one-forward-one-backward reducer does not fit; the
arithmetic (mean of the ranks' gradients before each optimiser step) is the same.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch

from gencli.errors import GencliError, UsageError


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) outside it."""
    try:
        return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise UsageError("RANK/WORLD_SIZE/LOCAL_RANK are not numbers; launch with torchrun") from None


class Group:
    """This process's place in the run: rank, world size and the collective operations the
    trainer needs (no-ops in a single process)."""

    def __init__(self, device: torch.device | None = None):
        self.rank, self.world, self.local_rank = env_world()
        self.active = self.world > 1
        if self.active and not torch.distributed.is_initialized():
            backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
            try:
                torch.distributed.init_process_group(backend)
            except (RuntimeError, ValueError) as e:
                raise GencliError(f"cannot join the torchrun process group ({e}); launch with "
                                  f"`torchrun --nproc-per-node N -m gencli train ...` or --nproc N") from None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global batch (of indices or values)."""
        if not self.active:
            return batch
        if batch.shape[0] % self.world:
            raise UsageError(f"--batch-size {batch.shape[0]} does not split evenly over {self.world} ranks")
        size = batch.shape[0] // self.world
        return batch[self.rank * size:(self.rank + 1) * size]

    def average_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Replace each tensor by its mean over the ranks (one flat all-reduce)."""
        if not self.active or not tensors:
            return
        flat = torch.cat([t.reshape(-1).float() for t in tensors])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        offset = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view_as(t))
            offset += n

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on any."""
        if not self.active:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def share(n: int, rank: int, world: int) -> range:
    """The contiguous block of ``range(n)`` that rank ``rank`` of ``world`` works on."""
    per = -(-n // world)
    return range(min(n, rank * per), min(n, (rank + 1) * per))


def device_for(device: torch.device) -> torch.device:
    """Under torchrun on CUDA, one device per rank (``cuda:LOCAL_RANK``)."""
    _, world, local = env_world()
    if world > 1 and device.type == "cuda" and device.index is None:
        return torch.device("cuda", local)
    return device


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``gencli ARGV`` on ``nproc`` processes of this node through torchrun's launcher; the
    exit code of the run (the first failing rank's). Each rank reports its own errors."""
    import logging

    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {nproc}")
    for name in ("torch.distributed.elastic", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # its own failure tables: ranks say why
    cores = max(1, (os.cpu_count() or 1) // nproc)
    os.environ.setdefault("OMP_NUM_THREADS", str(cores))
    os.environ.setdefault("GENCLI_THREADS", str(cores))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id="gencli",
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0,
                          monitor_interval=0.1)
    import sys

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        elastic_launch(config, sys.executable)("-m", "gencli", *argv)
    except ChildFailedError as e:
        codes = [f.exitcode for f in e.failures.values() if f.exitcode]
        return next((c for c in codes if c > 0), 1)
    return 0


def strip_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == option:
            skip = True
            continue
        if arg.startswith(option + "="):
            continue
        out.append(arg)
    return out
