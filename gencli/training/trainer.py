"""The one training loop every family uses (DESIGN.md, "training/").

A family contributes ``configure_optimizers()``, ``train_step(batch, step, ctx)`` and optionally
``ema_module()``, ``lr_factor(step, total)`` and ``preview_options()``; the trainer owns the
device, mixed precision, gradient clipping, EMA, the data order, sample grids, checkpoints,
resume, the JSONL log and the NaN guard.

Ctrl-C / SIGTERM stop the loop after the step in progress and save a resumable state (a second
signal stops at once; the last periodic checkpoint is then what remains).

A run folder holds:
  model.safetensors   inference checkpoint (EMA weights when EMA is on), loadable by `gencli sample`
  state.safetensors   everything needed to resume: weights, EMA, optimisers, RNG states, step
  log.jsonl           one JSON object per logged step
  samples/            preview grids written during training
Both checkpoint files are written atomically after the state was checked to be finite, so a
crash, Ctrl-C or a NaN never leaves a broken or poisoned checkpoint behind.

Resuming is exact: the data order is a pure function of (seed, epoch), and the torch/python/numpy
RNG states are saved, so N steps + resume + M steps gives the same weights as N + M steps.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from gencli import checkpoints, training_state
from gencli.errors import UsageError
from gencli.models.base import GenerativeModel
from gencli.training.device import AMP, resolve_device
from gencli.training.distributed import Group
from gencli.training.ema import EMA
from gencli.training.step import NonFiniteLoss, StepContext

STATE_FILE = "state.safetensors"
MODEL_FILE = "model.safetensors"
LOG_FILE = "log.jsonl"
SAMPLES_DIR = "samples"
KEPT_DIR = "checkpoints"


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 128
    seed: int = 0
    precision: str = "fp32"  # fp32 | fp16 | bf16
    grad_clip: float | None = 1.0
    ema_decay: float | None = 0.999
    log_every: int = 50
    save_every: int = 1000
    sample_every: int = 0  # 0: only at the end
    sample_n: int = 16
    keep_every: int = 0  # also keep checkpoints/step-NNNNNNN.safetensors every N steps; 0: never
    num_workers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Reporter:
    """Receives progress events; the CLI renders them with Rich. The default stays silent."""

    def start(self, step: int, total: int) -> None: ...
    def step(self, step: int, metrics: dict[str, float]) -> None:
        """After every step, with that step's values (progress bars)."""
    def update(self, step: int, metrics: dict[str, float], its: float) -> None:
        """Every ``log_every`` steps, with the averages logged to log.jsonl."""
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


class Trainer:
    def __init__(self, model: GenerativeModel, dataset: Any, run_dir: str | Path, cfg: TrainConfig,
                 device: torch.device | str = "cpu", reporter: Reporter | None = None,
                 metadata: dict[str, Any] | None = None,
                 write_samples: Callable[[torch.Tensor, Path], None] | None = None):
        if cfg.precision not in AMP:
            raise UsageError(f"--precision must be one of {sorted(AMP)}")
        self.model = model
        self.dataset = dataset
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.reporter = reporter or Reporter()
        self.metadata = dict(metadata or {})
        self.write_samples = write_samples
        self.amp_dtype = AMP[cfg.precision]
        self.scaler = (torch.amp.GradScaler("cuda")
                       if cfg.precision == "fp16" and self.device.type == "cuda" else None)
        self.model.to(self.device)
        self.optimizers = model.configure_optimizers()
        for opt in self.optimizers.values():
            for g in opt.param_groups:
                g.setdefault("initial_lr", g["lr"])
        ema_mod = model.ema_module() if cfg.ema_decay else None
        self.ema = EMA(ema_mod, cfg.ema_decay) if ema_mod is not None else None
        self._ema_prefix = self._prefix_of(ema_mod) if ema_mod is not None else None
        self.step = 0
        self.group = Group(self.device)  # torchrun's ranks (one process: rank 0 of 1)
        if cfg.batch_size % self.group.world:
            raise UsageError(f"--batch-size {cfg.batch_size} (the global batch) does not split evenly over "
                             f"{self.group.world} ranks")
        n = len(dataset)
        self.steps_per_epoch = n // cfg.batch_size if n >= cfg.batch_size else 1
        if n == 0:
            raise UsageError("the training data is empty")

    def _prefix_of(self, sub: nn.Module) -> str:
        for name, mod in self.model.named_modules():
            if mod is sub:
                return name + "." if name else ""
        raise ValueError("ema_module() must be a sub-module of the model")

    # --- data ---------------------------------------------------------------------------------
    def _batch_indices(self, step: int) -> torch.Tensor:
        """Indices of the batch at ``step``: a pure function of (seed, epoch), so resume is exact."""
        n = len(self.dataset)
        epoch, k = divmod(step, self.steps_per_epoch)
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)
        bs = min(self.cfg.batch_size, n)
        return perm[k * bs:(k + 1) * bs]

    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.group.shard(self._batch_indices(step))  # this rank's share of the global batch
        if hasattr(self.dataset, "batch"):
            x, y = self.dataset.batch(idx)
        else:
            items = [self.dataset[int(i)] for i in idx]
            x = torch.stack([it[0] for it in items])
            y = torch.tensor([int(it[1]) for it in items], dtype=torch.long)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    # --- state --------------------------------------------------------------------------------
    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        sd = {k: v.detach() for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            for k, v in self.ema.shadow.state_dict().items():
                sd[self._ema_prefix + k] = v.detach()
        return sd

    def _rng_state(self) -> dict[str, Any]:
        st: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                              "numpy": np.random.get_state()}
        if torch.cuda.is_available():
            st["cuda"] = torch.cuda.get_rng_state_all()
        return st

    def _set_rng_state(self, st: dict[str, Any]) -> None:
        torch.set_rng_state(st["torch"])
        random.setstate(st["python"])
        np.random.set_state(st["numpy"])
        if "cuda" in st and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(st["cuda"])

    def save(self, keep: bool = False) -> None:
        """Write state.safetensors and model.safetensors (rank 0 only; the ranks hold the same
        weights); with ``keep``, a copy of the model file as checkpoints/step-NNNNNNN.safetensors."""
        sd = self.inference_state_dict()
        for name, v in sd.items():
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                raise NonFiniteLoss(f"weights became non-finite ({name}) at step {self.step}")
        if not self.group.main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "step": self.step,
            "family": self.model.family,
            "config": self.model.config,
            "train_config": self.cfg.__dict__,
            "metadata": self.metadata,
            "model": self.model.state_dict(),
            "ema": self.ema.shadow.state_dict() if self.ema is not None else {},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "rng": self._rng_state(),
        }
        training_state.save_training_state(self.run_dir / STATE_FILE, state)
        config, shipped = self.model.export(sd)  # what the family ships (e.g. no discriminators)
        meta = dict(self.metadata)
        meta.update(family=self.model.family, config=config, step=self.step)
        checkpoints.save_checkpoint(self.run_dir / MODEL_FILE, shipped, meta, force=True)
        if keep:
            kept = self.run_dir / KEPT_DIR / f"step-{self.step:07d}.safetensors"
            kept.parent.mkdir(exist_ok=True)
            shutil.copyfile(self.run_dir / MODEL_FILE, kept)

    def _keeps_this_step(self) -> bool:
        """Whether ``--keep-every`` keeps a copy of this step's model."""
        return bool(self.cfg.keep_every) and self.step % self.cfg.keep_every == 0

    def load(self) -> None:
        state = training_state.load_training_state(self.run_dir / STATE_FILE, device="cpu")
        if state.get("family") != self.model.family:
            raise UsageError(f"{self.run_dir} holds a {state.get('family')} run, not {self.model.family}")
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema"):
            self.ema.shadow.load_state_dict(state["ema"])
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self._set_rng_state(state["rng"])
        self.step = int(state["step"])
        self._trim_log()

    def _trim_log(self) -> None:
        """Drop log lines written after the checkpoint we resume from (they will be redone)."""
        log = self.run_dir / LOG_FILE
        if not log.exists():
            return
        keep = []
        for line in log.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= self.step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue
        checkpoints.atomic_write(log, lambda p: p.write_text("".join(k + "\n" for k in keep)))

    # --- the loop -----------------------------------------------------------------------------
    def _set_lr(self) -> None:
        factor = self.model.lr_factor(self.step, self.cfg.steps)
        for opt in self.optimizers.values():
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * factor

    def preview(self) -> torch.Tensor | None:
        src = self.ema.shadow if self.ema is not None else None
        model = self.model
        if src is not None:
            model = copy.deepcopy(self.model)
            dict(model.named_modules())[self._ema_prefix[:-1]].load_state_dict(src.state_dict()) \
                if self._ema_prefix else model.load_state_dict(src.state_dict())
        model.eval()
        opts = model.preview_options()
        g = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
        try:
            return model.sample(self.cfg.sample_n, g, **opts)
        except NotImplementedError:
            return None

    def _mean_over_ranks(self, values: dict[str, float]) -> dict[str, float]:
        if not self.group.active or not values:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64)
        self.group.average_([t])
        return dict(zip(values, t.tolist()))

    def _write_preview(self) -> None:
        if self.write_samples is None or not self.group.main:
            return
        images = self.preview()
        if images is not None:
            self.write_samples(images, self.run_dir / SAMPLES_DIR / f"step{self.step:07d}.png")

    def _catch_signals(self) -> Callable[[], None]:
        """SIGINT/SIGTERM ask the loop to stop after the current step (then it saves and raises
        KeyboardInterrupt); a second signal stops at once, keeping the last periodic checkpoint.
        Signals the process ignores (a background job's SIGINT) stay ignored. Returns a function
        restoring the previous handlers. No-op outside the main thread."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        sigs = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
        previous = {}

        def handler(signum: int, frame: Any) -> None:
            if self.stop_signal is not None:
                self._hard_stop = True
                raise KeyboardInterrupt
            self.stop_signal = signum

        for sig in sigs:
            if signal.getsignal(sig) is signal.SIG_IGN:
                continue  # ignored on purpose (e.g. SIGINT of a background job, nohup): keep it so
            previous[sig] = signal.signal(sig, handler)

        def restore() -> None:
            for sig, h in previous.items():
                signal.signal(sig, h)

        return restore

    def fit(self) -> int:
        """Train until ``cfg.steps``; returns the final step. Raises on NaN / Ctrl-C after saving."""
        cfg = self.cfg
        ctx = StepContext(self)
        log_f = None
        main = self.group.main
        reporter = self.reporter if main else Reporter()  # progress and messages: rank 0
        reporter.start(self.step, cfg.steps)
        if self.step == 0:  # ranks > 0 draw their own streams (ctx.randn & co. are rank-independent)
            seed = cfg.seed + 1_000_003 * self.group.rank
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)
        last_saved = self.step
        self.stop_signal = None
        self._hard_stop = False
        t0, s0 = time.perf_counter(), self.step
        sums: dict[str, float] = {}
        count = 0
        restore = self._catch_signals()
        try:
            if main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                log_f = open(self.run_dir / LOG_FILE, "a", encoding="utf-8")
            self.model.train()
            while self.step < cfg.steps:
                if self.group.any(self.stop_signal is not None):  # a signal on any rank stops all
                    self.stop_signal = self.stop_signal or "peer"
                    raise KeyboardInterrupt  # saved below, between two whole steps
                batch = self._batch(self.step)
                self._set_lr()
                ctx.begin(self.step)
                metrics = self.model.train_step(batch, self.step, ctx)
                if self.ema is not None:
                    self.ema.update(self.model.ema_module(), self.step)
                self.step += 1
                values = {k: float(v) for k, v in metrics.items()}
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                reporter.step(self.step, values)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    its = (self.step - s0) / max(time.perf_counter() - t0, 1e-9)
                    avg = self._mean_over_ranks({k: v / count for k, v in sums.items()})
                    lr = next(iter(self.optimizers.values())).param_groups[0]["lr"]
                    rec = {"step": self.step, **avg, "lr": lr, "it_s": round(its, 3),
                           "time": round(time.time(), 3)}
                    if log_f is not None:
                        log_f.write(json.dumps(rec) + "\n")
                        log_f.flush()
                    reporter.update(self.step, avg, its)
                    sums, count = {}, 0
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.step < cfg.steps:
                    self._write_preview()
                    self.model.train()
                keep = self._keeps_this_step()
                if (self.step % cfg.save_every == 0 or keep) and self.step < cfg.steps:
                    self.save(keep=keep)
                    last_saved = self.step
            self.save(keep=self._keeps_this_step())
            self._write_preview()
            self.group.barrier()
            return self.step
        except NonFiniteLoss as exc:
            where = (f"the last good checkpoint (step {last_saved}) in {self.run_dir} is intact"
                     if last_saved else "nothing was saved")
            raise NonFiniteLoss(f"{exc}; stopped, {where}; try a lower --lr, --grad-clip or "
                                f"--precision fp32") from None
        except KeyboardInterrupt:
            if self.stop_signal is not None and not self._hard_stop and self.step > last_saved:
                self.save()  # only whole steps: the flag is checked between steps
            raise
        finally:
            restore()
            if log_f is not None:
                log_f.close()
            reporter.close()
