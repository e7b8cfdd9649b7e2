"""A training run in a folder: what `gencli train` does, as a library function.

:func:`prepare` checks the run folder, builds (or, with ``resume``, restores) the config, the
dataset and the network, and returns a ready :class:`~gencli.training.trainer.Trainer`. Nothing
in here knows a family: the family's class builds its config (``config_for_data``) and its data
(``training_data``, with the family's own train options from its spec).

The network is built after torch is seeded with the run's seed, so the same seed, data and device
give bit-identical weights (and N steps = N/2 steps + resume to N).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from gencli.errors import GencliError, UsageError
from gencli.training.trainer import KEPT_DIR, LOG_FILE, MODEL_FILE, SAMPLES_DIR, STATE_FILE

#: TrainConfig fields a resumed run inherits from its saved state unless given again; a family's
#: ``train_defaults`` override these for new runs.
DEFAULTS: dict[str, Any] = {"batch_size": 128, "seed": 0, "precision": "fp32", "grad_clip": 1.0,
                            "ema_decay": 0.999, "log_every": 50, "save_every": 1000,
                            "sample_every": 0, "sample_n": 16, "keep_every": 0}


@dataclass
class Prepared:
    trainer: Any
    model: Any
    dataset: Any
    metadata: dict[str, Any]
    resumed: bool


#: The trainer's folders in a run and the files it writes there.
_WRITTEN_FOLDERS = ((SAMPLES_DIR, "step*.png"), (KEPT_DIR, "step-*.safetensors"))


def run_files(run: Path) -> list[Path]:
    """The files/folders the trainer writes that exist in ``run``."""
    if not run.is_dir():
        return []
    found = [run / n for n in (STATE_FILE, MODEL_FILE, LOG_FILE) if (run / n).exists()]
    for folder, pattern in _WRITTEN_FOLDERS:
        if (run / folder).is_dir() and any((run / folder).glob(pattern)):
            found.append(run / folder)
    return found


def clean_run(run: Path) -> None:
    """Delete only what the trainer writes (state, model, log, samples/step*.png,
    checkpoints/step-*.safetensors)."""
    for name in (STATE_FILE, MODEL_FILE, LOG_FILE):
        with contextlib.suppress(FileNotFoundError):
            (run / name).unlink()
    for folder, pattern in _WRITTEN_FOLDERS:
        if (run / folder).is_dir():
            for f in (run / folder).glob(pattern):
                f.unlink()
            with contextlib.suppress(OSError):
                (run / folder).rmdir()  # only when nothing else is in it


def saved_step(run: Path) -> Any:
    from gencli import checkpoints, training_state

    for read in (lambda: checkpoints.read_metadata(run / MODEL_FILE),
                 lambda: training_state.load_training_state(run / STATE_FILE)):
        try:
            return read().get("step", "?")
        except GencliError:
            pass
    return "?"


LOCK_FILE = ".lock"


@contextlib.contextmanager
def locked(run: Path, shown: str) -> Iterator[None]:
    """Hold an advisory lock on the run folder (``RUN/.lock``, flock) for the whole command: a
    second `gencli train` on the same folder refuses, naming the process that holds it. The
    kernel releases the lock when the holder exits, crashes or is killed, so it never goes stale."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    created = not run.exists()
    path = run / LOCK_FILE
    try:
        run.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise GencliError(f"cannot write in {shown} ({e.strerror or e})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
            raise GencliError(f"{shown} is in use by another gencli train (process {holder}); wait for it to "
                              f"finish or stop it, then run this again") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        if created and [p.name for p in run.iterdir()] == [LOCK_FILE]:  # a run that wrote nothing
            path.unlink()
            run.rmdir()
        os.close(fd)


def check_run_folder(run: Path, shown: str, *, resume: bool, force: bool, init: bool = False) -> None:
    """Refuse (usage errors) what would lose or mix up a run: a file as --out, a run without
    --resume/--force, --resume of nothing, leftovers of an earlier run."""
    if resume and force:
        raise UsageError("--resume continues a run and --force starts it over: pass only one")
    if resume and init:
        raise UsageError("--resume continues a run and --init starts one from weights: pass only one")
    if run.exists() and not run.is_dir():
        raise UsageError(f"--out {shown} is a file; give a folder for the run")
    has_state = (run / STATE_FILE).exists()
    leftovers = run_files(run)
    if has_state and not resume and not force:
        raise UsageError(f"{shown} already holds a run (step {saved_step(run)}); pass --resume to continue "
                         f"it or --force to start over")
    if resume and not has_state:
        raise UsageError(f"{shown} holds no training state to resume (no {STATE_FILE}); "
                         f"drop --resume to start a new run")
    if leftovers and not has_state and not force:
        names = ", ".join(p.name + ("/" if p.is_dir() else "") for p in leftovers)
        raise UsageError(f"{shown} holds files of an earlier run ({names}) but no {STATE_FILE} to resume; "
                         f"pass --force to start over")


def prepare(spec: Any, run: Path, *, steps: int, data: str | None = None, options: dict[str, Any] | None = None,
            split: str = "train", image_size: int | None = None, channels: int | None = None,
            unconditional: bool = False, config: dict[str, Any] | None = None, lr: float | None = None,
            train: dict[str, Any] | None = None, resume: bool = False, device: Any = "cpu",
            reporter: Any = None, write_samples: Any = None, warn: Any = None, init: str | None = None) -> Prepared:
    """Everything up to the first step of a (new or resumed) run of ``spec`` in ``run``.

    ``options``: the family's train options (its spec's schema), ``train``: TrainConfig fields
    given by the user (None = default, or the resumed run's). ``warn(text)`` receives notes.
    ``init``: start a new run from these weights (see :func:`read_init`) instead of random ones.
    """
    import torch

    from gencli import training_state
    from gencli.training.trainer import TrainConfig, Trainer

    cls = spec.load_class()
    if not cls.trainable():
        raise UsageError(f"{spec.name} cannot be trained with gencli train")
    warn = warn or (lambda text: None)
    options = {k: v for k, v in (options or {}).items() if v is not None}
    train = {k: v for k, v in (train or {}).items() if v is not None}
    saved_train: dict[str, Any] = {}
    start = read_init(spec, init) if init else None
    if resume:
        changed = [o for o, v in (("--config", config), ("--lr", lr), ("--image-size", image_size),
                                  ("--channels", channels)) if v] + (["--unconditional"] if unconditional else [])
        if changed:
            raise UsageError(f"{', '.join(changed)} cannot change a run being resumed; "
                             f"start a new run (another --out, or --force)")
        state = training_state.load_training_state(run / STATE_FILE)
        if state.get("family") != spec.family:
            raise UsageError(f"{run} holds a {state.get('family')} run, not {spec.family}")
        cfg = dict(state["config"])
        saved_train = dict(state.get("train_config") or {})
        meta = dict(state.get("metadata") or {})
        done = int(state.get("step", 0))
        del state
        if steps <= done:
            raise UsageError(f"{run} is already at step {done}; --steps is the new total: pass more than {done}")
        if data and meta.get("data") and data != meta.get("data"):
            warn(f"warning: resuming with --data {data}, the run was trained on {meta.get('data')}")
        data = data or meta.get("data")
        options = {**dict(meta.get("train_options") or {}), **options}
        split = meta.get("split", split) if split == "train" else split
        ds = cls.training_data(data, split=split, channels=int(cfg["channels"]), size=int(cfg["image_size"]),
                               config=cfg, **options)
    else:
        if start is not None:
            channels, image_size = _init_shape(start, channels, image_size)
        ds = cls.training_data(data, split=split, channels=channels, size=image_size, **options)
        size = ds.image_size
        if not isinstance(size, int):
            raise UsageError(f"{data} holds {size[1]}x{size[0]} images; {spec.name} needs square images: "
                             f"pass --image-size N")
        num_classes = None if unconditional else (int(getattr(ds, "num_classes", 0) or 0) or None)
        overrides = {**dict(getattr(ds, "config_overrides", None) or {}), **(config or {})}
        try:
            cfg = cls.config_for_data(size, int(ds.channels), num_classes, None if start else overrides)
            if start is not None:
                cfg = _init_config(start, cfg, overrides)
            if lr is not None:
                cfg["optimizer"] = dict(cfg.get("optimizer") or {}, lr=lr)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise UsageError(f"--config does not give a valid {spec.name} config ({type(e).__name__}: {e})") from None
        meta = {"dataset": str(getattr(ds, "name", None) or data or spec.name), "split": split,
                "image_size": size, "channels": int(ds.channels),
                "class_names": list(getattr(ds, "class_names", []) or []) if num_classes else []}
        if data:
            meta["data"] = data
        if start is not None:
            meta["init"] = start.source
        if options:
            meta["train_options"] = options

    defaults = {**DEFAULTS, **cls.train_defaults}

    def pick(name: str) -> Any:
        return train[name] if name in train else saved_train.get(name, defaults[name])

    tcfg = TrainConfig(steps=steps, batch_size=pick("batch_size"), seed=pick("seed"), precision=pick("precision"),
                       grad_clip=pick("grad_clip") or None, ema_decay=pick("ema_decay") or None,
                       log_every=pick("log_every"), save_every=pick("save_every"),
                       sample_every=pick("sample_every"), sample_n=pick("sample_n") or 16,
                       keep_every=pick("keep_every") or 0)
    if resume:
        for name in ("batch_size", "seed"):
            if name in saved_train and getattr(tcfg, name) != saved_train[name]:
                warn(f"warning: --{name.replace('_', '-')} {getattr(tcfg, name)} differs from the run's "
                     f"{saved_train[name]}: the result will differ from an uninterrupted run")
    torch.manual_seed(tcfg.seed)  # the initial weights are a function of the seed
    try:
        net = cls.from_config(cfg)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UsageError(f"--config does not give a valid {spec.name} config ({type(e).__name__}: {e})") from None
    if start is not None:
        _load_init(net, start, warn)
    previews = pick("sample_n") != 0
    trainer = Trainer(net, ds, run, tcfg, device=device, reporter=reporter, metadata=meta,
                      write_samples=write_samples if previews else None)
    if resume:
        trainer.load()
    return Prepared(trainer, net, ds, meta, resume)


@dataclass
class Init:
    """The weights a new run starts from (``--init``)."""
    config: dict[str, Any]
    tensors: dict[str, Any]
    source: str


def read_init(spec: Any, ref: str) -> Init:
    """``ref``: a checkpoint name of ``spec`` (``fashion-mnist``), or any weights reference (a
    file, a run folder, ``org/repo``), resolved as `gencli sample --weights` does."""
    from gencli import registry

    named = registry.names_checkpoint(spec, ref)
    path, fmt = registry.resolve_checkpoint(spec, ref if named else None, None if named else ref)
    config, tensors, _ = registry.read_weights(path, fmt, spec.family)
    return Init(dict(config), dict(tensors), f"{spec.name} {ref}" if named else str(path))


def _init_shape(start: Init, channels: int | None, image_size: int | None) -> tuple[int, int]:
    """The data shape of a run from ``start``: its network's, which --channels/--image-size may only repeat."""
    have = {"--channels": int(start.config["channels"]), "--image-size": int(start.config["image_size"])}
    for option, given in (("--channels", channels), ("--image-size", image_size)):
        if given is not None and given != have[option]:
            raise UsageError(f"{option} {given} disagrees with --init {start.source}, whose network takes "
                             f"{have[option]}; drop {option}")
    return have["--channels"], have["--image-size"]


def _init_config(start: Init, default: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The config of a run from ``start``: its own (the network), with what it does not ship (None,
    e.g. a GAN's discriminator) from the family's default for the data, then ``--config``."""
    from gencli.models.configs import merge

    num_classes = default.get("num_classes") or None  # the classes the family would train on
    theirs = start.config.get("num_classes") or None
    if theirs != num_classes:
        have = f"{num_classes} classes" if num_classes else "no labels"
        want = f"conditional on {theirs} classes" if theirs else "unconditional"
        fix = "; pass --unconditional" if num_classes and not theirs else ""
        raise UsageError(f"--init {start.source} is {want}, the data has {have}{fix}")
    base = {**default, **{k: v for k, v in start.config.items() if v is not None}}
    return merge(base, overrides)


def _load_init(net: Any, start: Init, warn: Any) -> None:
    """Copy ``start``'s tensors into ``net`` (before the trainer copies it into the EMA); what the
    checkpoint does not ship (a GAN's discriminator) keeps its fresh initialisation."""
    try:
        missing, unexpected = net.load_state_dict(start.tensors, strict=False)
    except RuntimeError as e:
        first = str(e).split("\n\t")[1] if "\n\t" in str(e) else str(e)
        raise UsageError(f"--init {start.source} does not fit the run's network ({first.strip()}); "
                         f"--config may not change its architecture") from None
    if unexpected:
        raise UsageError(f"--init {start.source} holds tensors the run's network lacks (e.g. {unexpected[0]}); "
                         f"--config may not change its architecture")
    if missing:
        fresh = sorted({k.split(".")[0] for k in missing})
        warn(f"note: --init {start.source} ships no weights for {', '.join(fresh)}; "
             f"{'they start' if len(fresh) > 1 else 'it starts'} from a fresh initialisation")
