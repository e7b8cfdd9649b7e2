"""`gencli train`: train a model family on a dataset, with checkpoints, previews and resume."""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from gencli.cli import common
from gencli.errors import UsageError

STATE_FILE = "state.safetensors"  # the trainer's file names (gencli.training.trainer)
MODEL_FILE = "model.safetensors"
LOG_FILE = "log.jsonl"
SAMPLES_DIR = "samples"

#: TrainConfig fields a resumed run inherits from its saved state unless given again.
DEFAULTS: dict[str, Any] = {"batch_size": 128, "seed": 0, "precision": "fp32", "grad_clip": 1.0,
                            "ema_decay": 0.999, "log_every": 50, "save_every": 1000,
                            "sample_every": 0, "sample_n": 16}


def train(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Model family to train (see `gencli models`), e.g. ddpm.")],
    out: Annotated[str, typer.Option(
        "--out", "-o", help="Run folder (model.safetensors, state.safetensors, log.jsonl, samples/).")],
    steps: Annotated[int, typer.Option("--steps", help="Total optimisation steps (with --resume: the new total).")],
    data: Annotated[Optional[str], typer.Option(
        "--data", "-d", help="fashion-mnist, mnist, synthetic[:N], an image folder or an IDX folder "
        "(with --resume: defaults to the run's).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", help="Batch size [default: 128, translation families 1].")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate (overrides the config's).")] = None,
    ema_decay: Annotated[Optional[float], typer.Option(
        "--ema-decay", help="EMA decay of the shipped weights, 0 to disable [default: 0.999].")] = None,
    grad_clip: Annotated[Optional[float], typer.Option(
        "--grad-clip", help="Clip the gradient norm, 0 to disable [default: 1.0].")] = None,
    precision: Annotated[Optional[str], typer.Option(
        "--precision", help="fp32, fp16 or bf16 (autocast) [default: fp32].")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")] = "auto",
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (data order, init) [default: 0].")] = None,
    save_every: Annotated[Optional[int], typer.Option(
        "--save-every", help="Save a checkpoint every N steps [default: 1000].")] = None,
    sample_every: Annotated[Optional[int], typer.Option(
        "--sample-every", help="Write a preview grid every N steps, 0: only at the end [default: 0].")] = None,
    sample_n: Annotated[Optional[int], typer.Option(
        "--sample-n", help="Images per preview grid, 0 for no previews [default: 16].")] = None,
    log_every: Annotated[Optional[int], typer.Option(
        "--log-every", help="Log (log.jsonl, progress) every N steps [default: 50].")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", "-f", help="Start over: delete the run files (state, model, log, samples) in --out.")] = False,
    config: Annotated[Optional[str], typer.Option(
        "--config", help="JSON object or JSON file merged into the family's default config.")] = None,
    unconditional: Annotated[bool, typer.Option(
        "--unconditional", help="Ignore the dataset's labels (no class conditioning).")] = False,
    split: Annotated[str, typer.Option("--split", help="Dataset split.")] = "train",
    data_a: Annotated[Optional[str], typer.Option(
        "--data-a", help="Translation families: domain A images (cyclegan), or A folder of pairs (pix2pix).")] = None,
    data_b: Annotated[Optional[str], typer.Option(
        "--data-b", help="Translation families: domain B images, or B folder of pairs (pix2pix).")] = None,
    direction: Annotated[Optional[str], typer.Option(
        "--direction", help="Translation families: AtoB (default) or BtoA swaps the domains.")] = None,
    flip: Annotated[bool, typer.Option("--flip", help="Translation families: random horizontal flips.")] = False,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="Resize the data to N x N.")] = None,
    channels: Annotated[Optional[int], typer.Option("--channels", help="Convert the data to 1 or 3 channels.")] = None,
    quiet_: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
) -> None:
    """Train a model; Ctrl-C saves, and --resume continues exactly where the run stopped."""
    from gencli import registry

    spec = registry.get_family(model)
    common.check_positive(steps, "--steps")
    for value, option in ((batch_size, "--batch-size"), (save_every, "--save-every"),
                          (log_every, "--log-every"), (image_size, "--image-size")):
        common.check_positive(value, option)
    for value, option in ((sample_every, "--sample-every"), (sample_n, "--sample-n"), (seed, "--seed")):
        common.check_positive(value, option, 0)
    if precision is not None:
        common.check_choice(precision, common.PRECISIONS, "--precision")
    if channels is not None and channels not in (1, 3):
        raise UsageError(f"--channels must be 1 or 3, got {channels}")
    if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
        raise UsageError(f"--ema-decay must be in [0, 1), got {ema_decay}")
    if grad_clip is not None and grad_clip < 0:
        raise UsageError(f"--grad-clip must be >= 0, got {grad_clip}")
    if lr is not None and not lr > 0:
        raise UsageError(f"--lr must be > 0, got {lr}")
    if resume and force:
        raise UsageError("--resume continues a run and --force starts it over: pass only one")

    shown = out.rstrip("/") or out
    run = Path(out).expanduser()
    if run.exists() and not run.is_dir():
        raise UsageError(f"--out {shown} is a file; give a folder for the run")
    has_state = (run / STATE_FILE).exists()
    leftovers = _run_files(run)
    if has_state and not resume and not force:
        raise UsageError(f"{shown} already holds a run (step {_saved_step(run)}); pass --resume to continue "
                         f"it or --force to start over")
    if resume and not has_state:
        raise UsageError(f"{shown} holds no training state to resume (no {STATE_FILE}); "
                         f"drop --resume to start a new run")
    if leftovers and not has_state and not force:
        names = ", ".join(p.name + ("/" if p.is_dir() else "") for p in leftovers)
        raise UsageError(f"{shown} holds files of an earlier run ({names}) but no {STATE_FILE} to resume; "
                         f"pass --force to start over")

    cls = spec.load_class()
    family = registry.checkpoint_family(model)
    from gencli.models.base import GenerativeModel

    if cls.config_for_data.__func__ is GenerativeModel.config_for_data.__func__:
        raise UsageError(f"{model} cannot be trained with gencli train")

    from gencli import checkpoints
    from gencli.training.trainer import TrainConfig, Trainer

    saved_cfg: dict[str, Any] = {}
    if resume:
        changed = [o for o, v in (("--config", config), ("--lr", lr), ("--image-size", image_size),
                                  ("--channels", channels)) if v] + (["--unconditional"] if unconditional else [])
        if changed:
            raise UsageError(f"{', '.join(changed)} cannot change a run being resumed; "
                             f"start a new run (another --out, or --force)")
        state = checkpoints.load_training_state(run / STATE_FILE)
        if state.get("family") != family:
            raise UsageError(f"{shown} holds a {state.get('family')} run, not {family}")
        cfg = dict(state["config"])
        saved_cfg = dict(state.get("train_config") or {})
        meta = dict(state.get("metadata") or {})
        done = int(state.get("step", 0))
        del state
        if steps <= done:
            raise UsageError(f"{shown} is already at step {done}; --steps is the new total: pass more than {done}")
        data, data_a, data_b = data or meta.get("data"), data_a or meta.get("data_a"), data_b or meta.get("data_b")
        direction, flip = direction or meta.get("direction"), flip or bool(meta.get("flip"))
        if meta.get("data") and data != meta.get("data"):
            common.note(f"warning: resuming with --data {data}, the run was trained on {meta.get('data')}")
        split = meta.get("split", split) if split == "train" else split
        out_ch = cfg.get("channels_b", cfg.get("output_channels"))
        ds, _ = _dataset(spec, family, data, data_a, data_b, direction, flip, split,
                         int(cfg["channels"]), int(cfg["image_size"]),
                         int(out_ch) if out_ch is not None else None)
        net = cls.from_config(cfg)
    else:
        overrides = common.parse_config(config)
        ds, data_overrides = _dataset(spec, family, data, data_a, data_b, direction, flip, split,
                                      channels, image_size)
        overrides = {**data_overrides, **overrides}
        size = ds.image_size
        if not isinstance(size, int):
            raise UsageError(f"{data} holds {size[1]}x{size[0]} images; {model} needs square images: "
                             f"pass --image-size N")
        num_classes = None if unconditional else (int(getattr(ds, "num_classes", 0) or 0) or None)
        try:
            cfg = cls.config_for_data(size, int(ds.channels), num_classes, overrides)
            if lr is not None:
                cfg["optimizer"] = dict(cfg.get("optimizer") or {}, lr=lr)
            net = cls.from_config(cfg)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise UsageError(f"--config does not give a valid {model} config ({type(e).__name__}: "
                             f"{common.one_line(e)})") from None
        sources = {"data": data, "data_a": data_a, "data_b": data_b, "direction": direction,
                   "flip": flip or None}
        meta = {"dataset": str(getattr(ds, "name", None) or data or f"{data_a} | {data_b}"),
                **{k: v for k, v in sources.items() if v is not None}, "split": split,
                "image_size": size, "channels": int(ds.channels),
                "class_names": list(getattr(ds, "class_names", []) or []) if num_classes else []}
        done = 0

    defaults = {**DEFAULTS, **(getattr(cls, "train_defaults", None) or {})}

    def pick(name: str, value: Any) -> Any:
        if value is not None:
            return value
        return saved_cfg.get(name, defaults[name])

    ema = pick("ema_decay", ema_decay)
    clip = pick("grad_clip", grad_clip)
    tcfg = TrainConfig(steps=steps, batch_size=pick("batch_size", batch_size), seed=pick("seed", seed),
                       precision=pick("precision", precision), grad_clip=clip or None, ema_decay=ema or None,
                       log_every=pick("log_every", log_every), save_every=pick("save_every", save_every),
                       sample_every=pick("sample_every", sample_every),
                       sample_n=pick("sample_n", sample_n) or 16)
    previews = pick("sample_n", sample_n) != 0
    if resume:
        for name in ("batch_size", "seed"):
            if name in saved_cfg and getattr(tcfg, name) != saved_cfg[name]:
                common.note(f"warning: --{name.replace('_', '-')} {getattr(tcfg, name)} differs from the run's "
                            f"{saved_cfg[name]}: the result will differ from an uninterrupted run")

    dev = common.device_of(device)
    common.warn_if_emulated(dev, tcfg.precision)
    if force:
        _clean_run(run)

    from gencli.io.writers import write_images

    nrow = net.num_classes if getattr(net, "num_classes", None) else None

    def write_samples(images: Any, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_images(images, str(path), force=True, nrow=nrow)

    chatty = common.show_progress(quiet_)  # start lines and the bar: only on a terminal
    reporter = _reporter(chatty, model)
    trainer = Trainer(net, ds, run, tcfg, device=dev, reporter=reporter, metadata=meta,
                      write_samples=write_samples if previews else None)
    if resume:
        trainer.load()
    if chatty and resume:
        common.info(f"resuming {shown} at step {trainer.step} of {steps}")
    elif chatty:
        classes = f", {net.num_classes} classes" if getattr(net, "num_classes", None) else ""
        common.info(f"training {model} on {meta['dataset']} ({len(ds)} images, {meta['image_size']}px, "
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
    if spec.group == "translation":
        use = f"translate with: gencli translate {model} --weights {shlex.quote(shown)} INPUT... -o out/"
    else:
        use = f"sample it with: gencli sample {model} --weights {shlex.quote(shown)} -o samples.png"
    common.info(f"wrote {shown}/{MODEL_FILE} (step {final}); {use}", quiet_)


def _dataset(spec: Any, family: str, data: str | None, data_a: str | None, data_b: str | None,
             direction: str | None, flip: bool, split: str, channels: int | None,
             size: int | None, channels_b: int | None = None) -> tuple[Any, dict[str, Any]]:
    """(training dataset, config overrides the data implies) for ``--data`` / ``--data-a/-b``."""
    if spec.group == "translation":
        from gencli.models.translation.data import build_training_data

        ds = build_training_data(family, data=data, data_a=data_a, data_b=data_b, size=size,
                                 channels=channels, direction=direction or "AtoB", flip=flip, split=split,
                                 channels_b=channels_b)
        return ds, dict(getattr(ds, "config_overrides", None) or {})
    if data_a or data_b or direction or flip:
        raise UsageError("--data-a, --data-b, --direction and --flip are for the translation families; "
                         "use --data")
    if not data:
        raise UsageError("--data is required: fashion-mnist, mnist, synthetic[:N], or a folder")
    from gencli.io.datasets import resolve_dataset

    return resolve_dataset(data, split=split, channels=channels, size=size), {}


def _run_files(run: Path) -> list[Path]:
    """The files/folders the trainer writes that exist in ``run``."""
    if not run.is_dir():
        return []
    found = [run / n for n in (STATE_FILE, MODEL_FILE, LOG_FILE) if (run / n).exists()]
    samples = run / SAMPLES_DIR
    if samples.is_dir() and any(samples.glob("step*.png")):
        found.append(samples)
    return found


def _clean_run(run: Path) -> None:
    """Delete only what the trainer writes (state, model, log, samples/step*.png)."""
    for name in (STATE_FILE, MODEL_FILE, LOG_FILE):
        with contextlib.suppress(FileNotFoundError):
            (run / name).unlink()
    samples = run / SAMPLES_DIR
    if samples.is_dir():
        for png in samples.glob("step*.png"):
            png.unlink()
        with contextlib.suppress(OSError):
            samples.rmdir()  # only when nothing else is in it


def _saved_step(run: Path) -> Any:
    from gencli import checkpoints
    from gencli.errors import GencliError

    try:
        return checkpoints.read_metadata(run / MODEL_FILE).get("step", "?")
    except GencliError:
        pass
    try:
        return checkpoints.load_training_state(run / STATE_FILE).get("step", "?")
    except GencliError:
        return "?"


def _reporter(enabled: bool, model: str):
    from gencli.training.trainer import Reporter

    class RichReporter(Reporter):
        """Step/total, loss and it/s on a rich progress bar (stderr)."""

        def __init__(self) -> None:
            self._stack: contextlib.ExitStack | None = None
            self._bar: Any = None

        def start(self, step: int, total: int) -> None:
            self._stack = contextlib.ExitStack()
            self._bar = self._stack.enter_context(common.progress_bar(
                f"train {model}", total, enabled=True, extra="loss {task.fields[loss]:.4f}"))
            self._bar.set_completed(step)

        def update(self, step: int, metrics: dict[str, float], its: float) -> None:
            if self._bar is not None:
                loss = metrics.get("loss", next(iter(metrics.values()), float("nan")))
                self._bar.update(completed=step, loss=float(loss))

        def message(self, text: str) -> None:
            common.info(text)

        def close(self) -> None:
            if self._stack is not None:
                self._stack.close()
                self._stack = self._bar = None

    return RichReporter() if enabled else Reporter()

