"""Helpers shared by the command modules: global state, stderr messages, progress bars, output
rules, option parsing, device/precision handling.

Module level imports only the standard library (``gencli --help`` must stay instant); torch and
rich are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from gencli.errors import GencliError, UsageError
from gencli.runtime import PRECISIONS  # noqa: F401 (torch-free; the commands check --precision with it)

NO_OUTPUT = "no output given: pass -o FILE.png, -o DIR/ or -o -"


class Interrupted(GencliError):
    """Ctrl-C, reported as ``gencli: <message>`` with exit code 130."""

    exit_code = 130


@dataclass
class State:
    debug: bool = False
    quiet: bool = False
    threads: int | None = None
    argv: tuple[str, ...] = ()  # the command line being run (re-run by `train --nproc`)


STATE = State()


def reset_state() -> None:
    STATE.debug = env_flag("GENCLI_DEBUG")
    STATE.quiet = env_flag("GENCLI_QUIET")
    STATE.threads = None
    stdin = sys.modules.get("gencli.io.stdin")  # only if loaded: `gencli --help` imports none of io
    if stdin is not None:
        stdin.reset_stdin()


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


# --- stderr ----------------------------------------------------------------------------------
def one_line(text: str) -> str:
    """Collapse a (possibly multi-line) message into one line."""
    lines = [part.strip() for part in str(text).splitlines() if part.strip()]
    return "; ".join(lines)


def quiet(flag: bool = False) -> bool:
    """True when informational lines (``wrote ...``) should be suppressed."""
    return flag or STATE.quiet


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def stdout_is_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def show_progress(flag: bool = False) -> bool:
    """Progress bars only on an interactive stderr and when not ``--quiet``."""
    return not quiet(flag) and stderr_is_tty()


def info(message: str, flag: bool = False) -> None:
    """One informational line on stderr (unless quiet)."""
    if not quiet(flag):
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def note(message: str) -> None:
    """A ``gencli: <message>`` line on stderr, shown even when quiet (warnings, interruptions)."""
    sys.stderr.write(f"gencli: {one_line(message)}\n")
    sys.stderr.flush()


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class _NullBar:
    def set_total(self, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def update(self, **fields: Any) -> None: ...
    def set_completed(self, n: int) -> None: ...


class _RichBar:
    def __init__(self, progress: Any, task: Any):
        self._p, self._t = progress, task

    def set_total(self, total: int) -> None:
        self._p.update(self._t, total=total)

    def advance(self, n: int = 1) -> None:
        self._p.advance(self._t, n)

    def set_completed(self, n: int) -> None:
        self._p.update(self._t, completed=n)

    def update(self, **fields: Any) -> None:
        self._p.update(self._t, **fields)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None = None, *, enabled: bool = True,
                 extra: str = "") -> Iterator[Any]:
    """A rich progress bar on stderr (description, bar, done/total, it/s, elapsed, remaining).

    ``extra`` is a format string over the task's fields (e.g. ``"loss {task.fields[loss]}"``).
    Yields an object with ``set_total``, ``advance``, ``set_completed`` and ``update(**fields)``;
    a no-op object when ``enabled`` is False.
    """
    if not enabled:
        yield _NullBar()
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class SpeedColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.2f} it/s" if speed else "-- it/s", style="progress.data.speed")

    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if extra:
        columns.append(TextColumn(extra))
    columns += [SpeedColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total, loss=float("nan"))
        yield _RichBar(progress, task)


# --- options ---------------------------------------------------------------------------------
def check_choice(value: str, choices: Sequence[str], option: str) -> str:
    if value not in choices:
        raise UsageError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_positive(value: int | None, option: str, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise UsageError(f"{option} must be at least {minimum}, got {value}")


def check_range(value: float | None, option: str, low: float, high: float | None = None, *,
                upper_open: bool = False) -> None:
    """A finite number in [low, high] (or [low, high) with ``upper_open``); None passes."""
    import math

    if value is None:
        return
    above = high is not None and (value >= high if upper_open else value > high)
    if not math.isfinite(value) or value < low or above:
        bound = "" if high is None else (f", {high})" if upper_open else f", {high}]")
        want = f"in [{low}{bound}" if high is not None else f">= {low}"
        raise UsageError(f"{option} must be {want}, got {value}")


def parse_int_list(values: Sequence[str] | str | None, option: str,
                   names: Sequence[str] | None = None) -> list[int]:
    """``["1,3", "5"]`` -> ``[1, 3, 5]``; entries may also be names from ``names`` (case-insensitive)."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    lookup = {n.lower(): i for i, n in enumerate(names or [])}
    out: list[int] = []
    for value in values:
        for item in str(value).split(","):
            item = item.strip()
            if not item:
                continue
            try:
                out.append(int(item))
            except ValueError:
                if item.lower() in lookup:
                    out.append(lookup[item.lower()])
                    continue
                known = f" (known names: {', '.join(names)})" if names else ""
                raise UsageError(f"{option}: {item!r} is not an integer{known}") from None
    return out


def parse_config(text: str | None) -> dict[str, Any]:
    """``--config``: a JSON object, or the path of a JSON file."""
    if not text:
        return {}
    src = text
    stripped = text.strip()
    if not stripped.startswith("{"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise UsageError(f"--config {text!r} is neither a JSON object nor an existing JSON file")
        try:
            stripped = path.read_text(encoding="utf-8")
        except OSError as e:
            raise GencliError(f"cannot read {path}: {e.strerror or e}") from None
        src = str(path)
    try:
        cfg = json.loads(stripped)
    except json.JSONDecodeError as e:
        raise UsageError(f"--config {src}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(cfg, dict):
        raise UsageError(f"--config {src}: expected a JSON object, got {type(cfg).__name__}")
    return cfg


# --- output ----------------------------------------------------------------------------------
def resolve_output(out: str | None, *, json_out: bool = False) -> str:
    """Apply the ``-o`` rules: omitted -> stdout when it is not a terminal, else a usage error."""
    if json_out:
        if out is None:
            raise UsageError("--json prints the summary on stdout: pass -o FILE.png or -o DIR/ for the images")
        if out == "-":
            raise UsageError("--json and -o - both want stdout: pass -o FILE.png or -o DIR/")
        return out
    if out is None:
        if stdout_is_tty():
            raise UsageError(NO_OUTPUT)
        return "-"
    if out == "":
        raise UsageError(NO_OUTPUT)
    if out == "-" and stdout_is_tty():
        raise UsageError("refusing to write a PNG to the terminal: redirect stdout (-o - > x.png, or a pipe) "
                         "or pass -o FILE.png")
    return out


GRID_HELP = "With -o - and several images: one PNG grid instead of a stream of PNGs."


def streams(out: str, count: int, grid: bool) -> bool:
    """Whether ``out`` receives the images one by one: a folder, or stdout as a PNG stream."""
    return is_folder_target(out) or (out == "-" and not grid and count > 1)


def is_folder_target(out: str) -> bool:
    return out != "-" and (out.endswith(("/", os.sep)) or os.path.isdir(out) or os.path.splitext(out)[1] == "")


def precheck_output(out: str, n: int, *, force: bool, animation: bool = False,
                    names: Sequence[str] | None = None) -> None:
    """Fail before any work when ``out`` cannot be written or would overwrite without --force.

    Mirrors the checks of gencli.io.writers so a long sampling run does not end in a refusal.
    """
    if out == "-":
        return
    if is_folder_target(out):
        if os.path.exists(out) and not os.path.isdir(out):
            raise UsageError(f"{out} exists and is not a folder")
        if force:
            return
        if names is None:
            width = max(6, len(str(max(n - 1, 0))))
            names = [f"{i:0{width}d}.png" for i in range(n)]
        else:
            names = [str(Path(name).with_suffix(".png")) for name in names]
        for name in names:
            target = os.path.join(out, name)
            if os.path.exists(target):
                raise UsageError(f"{target} exists; pass --force to overwrite")
        return
    from gencli.io.writers import WRITE_EXTENSIONS

    ext = os.path.splitext(out)[1].lower()
    if animation and ext == ".gif":
        pass
    elif ext not in WRITE_EXTENSIONS:
        raise UsageError(f"cannot write {out}: unknown image extension "
                         f"(use {', '.join(sorted(WRITE_EXTENSIONS))}, a folder DIR/ or -)")
    if os.path.isdir(out):
        raise UsageError(f"{out} is a folder; end -o with a file name such as {out}/grid.png")
    if os.path.exists(out) and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite")


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def describe_output(written: Sequence[str], out: str, streamed: int = 0) -> str:
    """What was written, for a summary line; ``streamed``: how many images went one by one."""
    if out == "-":
        return f"{streamed} PNGs to stdout" if streamed > 1 else "a PNG to stdout"
    if len(written) > 1 or is_folder_target(out):
        return f"{len(written)} files in {out}"
    return written[0] if written else out


# --- device / precision ----------------------------------------------------------------------
def device_of(spec: str) -> Any:
    """The device of ``--device``; every command that computes passes through here, so this is
    also where the allocator is tuned and the thread count set (--threads / GENCLI_THREADS)."""
    from gencli.runtime import set_threads, tune_allocator
    from gencli.training.device import resolve_device

    tune_allocator()
    set_threads(STATE.threads)
    return resolve_device(spec or "auto")


def autocast(device: Any, precision: str) -> contextlib.AbstractContextManager:
    """autocast for fp16/bf16 around model calls (gencli.runtime.autocast)."""
    from gencli import runtime

    return runtime.autocast(device, precision)


def warn_if_emulated(device: Any, precision: str) -> None:
    """gencli.runtime.warn_if_emulated (a warning, once per process)."""
    from gencli import runtime

    runtime.warn_if_emulated(device, precision)


def generator(device: Any, seed: int) -> Any:
    import torch

    return torch.Generator(device=device).manual_seed(int(seed))


def load_model(name: str, checkpoint: str | None, weights: str | None, device: str = "auto",
               precision: str = "fp32") -> Any:
    """gencli.load on the device named by ``--device``, with the allocator tuned for computing."""
    from gencli import api

    return api.load(name, weights, device_of(device), precision, checkpoint=checkpoint)


def describe_settings(settings: dict[str, Any]) -> str:
    """`` name=value ...`` of a model's effective settings, for a summary line (empty for none)."""
    return "".join(f" {k}={v}" for k, v in settings.items())


def checkpoint_label(spec: Any, checkpoint: str | None, weights: str | None) -> str:
    if weights:
        return weights
    return checkpoint or spec.default_checkpoint or ""
