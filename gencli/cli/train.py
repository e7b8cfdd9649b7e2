"""`gencli train`: train a model family on a dataset, with checkpoints, previews and resume."""

from __future__ import annotations

import contextlib
import math
import shlex
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from gencli.cli import common, families
from gencli.errors import UsageError



def train(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Model family to train (see `gencli models`).")],
    out: Annotated[str, typer.Option(
        "--out", "-o", help="Run folder (model.safetensors, state.safetensors, log.jsonl, samples/).")],
    steps: Annotated[int, typer.Option("--steps", help="Total optimisation steps (with --resume: the new total).")],
    rest: Annotated[Optional[List[str]], typer.Argument(metavar="[FAMILY OPTIONS]",
        help="The family's own training options (listed by `gencli train MODEL --help`).",
        show_default=False)] = None,
    data: Annotated[Optional[str], typer.Option(
        "--data", "-d", help="fashion-mnist, mnist, synthetic[:N], an image folder or an IDX folder "
        "(with --resume: defaults to the run's).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", help="Batch size [default: the family's, 128 for most].")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate (overrides the config's).")] = None,
    ema_decay: Annotated[Optional[float], typer.Option(
        "--ema-decay", help="EMA decay of the shipped weights, 0 to disable [default: the family's, 0.999 for most].")] = None,
    grad_clip: Annotated[Optional[float], typer.Option(
        "--grad-clip", help="Clip the gradient norm, 0 to disable [default: the family's, 1.0 for most].")] = None,
    precision: Annotated[Optional[str], typer.Option(
        "--precision", help="fp32, fp16 or bf16 (autocast) [default: fp32].")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")] = "auto",
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (initial weights, data order) [default: 0].")] = None,
    save_every: Annotated[Optional[int], typer.Option(
        "--save-every", help="Save a checkpoint every N steps [default: 1000].")] = None,
    keep_every: Annotated[Optional[int], typer.Option(
        "--keep-every", help="Also keep the shipped model of every Nth step as checkpoints/step-NNNNNNN.safetensors "
        "(for quality-over-training curves), 0: none [default: 0].")] = None,
    sample_every: Annotated[Optional[int], typer.Option(
        "--sample-every", help="Write a preview grid every N steps, 0: only at the end [default: 0].")] = None,
    sample_n: Annotated[Optional[int], typer.Option(
        "--sample-n", help="Images per preview grid, 0 for no previews [default: 16].")] = None,
    log_every: Annotated[Optional[int], typer.Option(
        "--log-every", help="Log (log.jsonl) every N steps [default: 50].")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    init: Annotated[Optional[str], typer.Option(
        "--init", help="Start a new run from these weights instead of random ones (fine-tuning): a checkpoint "
        "name of MODEL, a file, a run folder or a hub reference. Its network is kept; --config changes "
        "the rest (optimizer, loss).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", "-f", help="Start over: delete the run files (state, model, log, samples) in --out.")] = False,
    config: Annotated[Optional[str], typer.Option(
        "--config", help="JSON object or JSON file merged into the family's default config.")] = None,
    unconditional: Annotated[bool, typer.Option(
        "--unconditional", help="Ignore the dataset's labels (no class conditioning).")] = False,
    split: Annotated[str, typer.Option("--split", help="Dataset split.")] = "train",
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="Resize the data to N x N.")] = None,
    channels: Annotated[Optional[int], typer.Option("--channels", help="Convert the data to 1 or 3 channels.")] = None,
    nproc: Annotated[Optional[int], typer.Option(
        "--nproc", help="Train on N processes of this machine (torchrun's launcher; DDP-style gradient "
        "averaging, gloo on CPU, nccl on CUDA). --batch-size stays the global batch.")] = None,
    quiet_: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
) -> None:
    """Train a model; Ctrl-C saves, and --resume continues exactly where the run stopped."""
    from gencli import registry

    spec = registry.get_family(model)
    _, options = families.split_args(spec, "train", rest or [], positionals=0)
    common.check_positive(steps, "--steps")
    for value, option in ((batch_size, "--batch-size"), (save_every, "--save-every"),
                          (log_every, "--log-every"), (image_size, "--image-size")):
        common.check_positive(value, option)
    for value, option in ((sample_every, "--sample-every"), (sample_n, "--sample-n"), (seed, "--seed"),
                          (keep_every, "--keep-every")):
        common.check_positive(value, option, 0)
    if precision is not None:
        common.check_choice(precision, common.PRECISIONS, "--precision")
    if channels is not None and channels not in (1, 3):
        raise UsageError(f"--channels must be 1 or 3, got {channels}")
    common.check_range(ema_decay, "--ema-decay", 0.0, 1.0, upper_open=True)
    common.check_range(grad_clip, "--grad-clip", 0.0)
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise UsageError(f"--lr must be > 0, got {lr}")

    overrides = common.parse_config(config)
    from gencli.training import distributed
    from gencli.training import run as runs

    rank, world, _ = distributed.env_world()
    if nproc is not None and nproc > 1 and world == 1:  # start the ranks, each runs this command
        raise typer.Exit(distributed.launch(nproc, distributed.strip_option(common.STATE.argv, "--nproc")))
    common.check_positive(nproc, "--nproc")
    if rank > 0:
        quiet_ = True  # rank 0 speaks for the run

    shown = out.rstrip("/") or out
    run = Path(out).expanduser()
    if run.exists() and not run.is_dir():
        raise UsageError(f"--out {shown} is a file; give a folder for the run")
    lock = runs.locked(run, shown) if rank == 0 else contextlib.nullcontext()
    with lock:  # one writer per run folder (released on exit, crash or kill)
        runs.check_run_folder(run, shown, resume=resume, force=force, init=bool(init))
        dev = distributed.device_for(common.device_of(device))
        if force and rank == 0:
            runs.clean_run(run)
        from gencli.io.writers import write_images

        chatty = common.show_progress(quiet_)  # start lines and the bar: only on a terminal
        state: dict[str, Any] = {}

        def write_samples(images: Any, path: Path) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_images(images, str(path), force=True, nrow=state.get("nrow"))

        given = {"batch_size": batch_size, "seed": seed, "precision": precision, "grad_clip": grad_clip,
                 "ema_decay": ema_decay, "log_every": log_every, "save_every": save_every,
                 "sample_every": sample_every, "sample_n": sample_n, "keep_every": keep_every}
        prepared = runs.prepare(spec, run, steps=steps, data=data, options=options, split=split, image_size=image_size,
                                channels=channels, unconditional=unconditional, config=overrides,
                                lr=lr, train=given, resume=resume, init=init, device=dev, reporter=_reporter(chatty, model),
                                write_samples=write_samples, warn=common.note)
        trainer, net, meta = prepared.trainer, prepared.model, prepared.metadata
        state["nrow"] = net.num_classes or None
        common.warn_if_emulated(dev, trainer.cfg.precision)
        if chatty and resume:
            common.info(f"resuming {shown} at step {trainer.step} of {steps}")
        elif chatty:
            if init:
                common.info(f"starting from {meta['init']}")
            classes = f", {net.num_classes} classes" if net.num_classes else ""
            common.info(f"training {model} on {meta['dataset']} ({len(prepared.dataset)} images, {meta['image_size']}px, "
                        f"{meta['channels']} channel(s){classes}) for {steps} steps on {dev} -> {shown}")
        try:
            final = trainer.fit()
        except KeyboardInterrupt:
            import signal

            term = getattr(trainer, "stop_signal", None) == getattr(signal, "SIGTERM", None)
            what = "stopped by SIGTERM" if term else "interrupted"
            cmd = ["gencli", "train", model, "--out", shown, "--steps", str(steps), "--resume"]
            err = common.Interrupted(f"{what} at step {trainer.step}; continue with: {shlex.join(cmd)}")
            err.exit_code = 143 if term else 130
            raise err from None
        finally:
            # leave torchrun's process group before the interpreter exits: its gloo threads torn
            # down at exit can abort the process ("terminate called without an active exception")
            trainer.group.close()
        quoted = shlex.quote(shown)
        if "sample" in spec.capabilities:
            use = f"sample it with: gencli sample {model} --weights {quoted} -o samples.png"
        elif "translate" in spec.capabilities:
            use = f"translate with: gencli translate {model} --weights {quoted} INPUT... -o out/"
        else:
            use = f"use it with --weights {quoted}"
        common.info(f"wrote {shown}/{runs.MODEL_FILE} (step {final}); {use}", quiet_)


def _reporter(enabled: bool, model: str):
    from gencli.training.trainer import Reporter

    class RichReporter(Reporter):
        """Step/total, a smoothed loss and it/s on a rich progress bar (stderr), every step."""

        def __init__(self) -> None:
            self._stack: contextlib.ExitStack | None = None
            self._bar: Any = None
            self._loss: float | None = None

        def start(self, step: int, total: int) -> None:
            self._stack = contextlib.ExitStack()
            self._bar = self._stack.enter_context(common.progress_bar(
                f"train {model}", total, enabled=True, extra="loss {task.fields[loss]:.4f}"))
            self._bar.set_completed(step)

        def step(self, step: int, metrics: dict[str, float]) -> None:
            loss = metrics.get("loss", sum(metrics.values()) if metrics else float("nan"))
            # exponential moving average over ~20 steps; the first loss as soon as it exists
            self._loss = loss if self._loss is None else 0.95 * self._loss + 0.05 * loss
            if self._bar is not None:
                self._bar.update(completed=step, loss=self._loss)

        def message(self, text: str) -> None:
            common.info(text)

        def close(self) -> None:
            if self._stack is not None:
                self._stack.close()
                self._stack = self._bar = None

    return RichReporter() if enabled else Reporter()
