"""The `gencli` command: a thin Typer app wiring the command modules, and ``main()``, which turns
every failure into one ``gencli: <message>`` line on stderr and an exit code.

Exit codes: 0 success, 1 runtime failure, 2 usage error, 130 interrupted (Ctrl-C).
Only typer and the standard library are imported here and in the command modules at import time;
torch, rich and the models are imported inside the commands, so `gencli --help` is instant.
"""

from __future__ import annotations

import sys
import traceback
import warnings
from typing import Annotated, Optional, Sequence

import typer

from gencli import __version__
from gencli.cli import common, export, interpolate, manage, sample, train, translate
from gencli.cli.families import FamilyCommand, GencliCommand
from gencli.errors import GencliError

app = typer.Typer(
    name="gencli",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gencli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option(
        "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
    debug: Annotated[bool, typer.Option(
        "--debug", help="Show tracebacks for errors (or set GENCLI_DEBUG=1).")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bars or summaries on stderr (errors and warnings still show).")] = False,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", metavar="N", help="CPU threads for computing (or GENCLI_THREADS) [default: the CPUs not "
        "busy with other work when the command starts].")] = None,
) -> None:
    """Train, sample, interpolate, translate, evaluate and export generative image models.

    Results go to stdout only when asked (-o -, --json); progress and messages go to stderr.
    Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted.
    """
    common.STATE.debug = common.STATE.debug or debug
    common.STATE.quiet = common.STATE.quiet or quiet
    common.STATE.threads = threads


#: commands whose rest of the line carries a family's own options (cli/families.py)
_FAMILY = {"cls": FamilyCommand, "context_settings": {"ignore_unknown_options": True}}
app.command("train", **_FAMILY)(train.train)
app.command("sample", **_FAMILY)(sample.sample)
app.command("interpolate", **_FAMILY)(interpolate.interpolate)
app.command("translate", **_FAMILY)(translate.translate)
app.command("export", **_FAMILY)(export.export)


def _register_evaluate() -> None:
    """Wire `gencli evaluate` from gencli.cli.evaluate; if that module cannot be imported, register a
    stand-in that reports why, so the other commands keep working."""
    try:
        from gencli.cli import evaluate as evaluate_module

        app.command("evaluate", **_FAMILY)(evaluate_module.evaluate)
    except Exception as e:  # noqa: BLE001 - a broken optional command must not break the CLI
        reason = common.one_line(f"{type(e).__name__}: {e}")

        def unavailable(args: Annotated[Optional[list[str]], typer.Argument(hidden=True)] = None) -> None:
            """Compute quality metrics over images (unavailable in this installation)."""
            raise GencliError(f"gencli evaluate is unavailable here ({reason})")

        app.command("evaluate", context_settings={"ignore_unknown_options": True})(unavailable)


_register_evaluate()
app.command("models", cls=GencliCommand)(manage.models)
app.command("pull", cls=GencliCommand)(manage.pull)
app.command("convert", cls=GencliCommand)(manage.convert)


# --- entry point -----------------------------------------------------------------------------
def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    text = common.one_line(str(message)) or category.__name__
    if common.STATE.debug:
        text += f" ({category.__name__} at {filename}:{lineno})"
    try:
        sys.stderr.write(f"gencli: warning: {text}\n")
    except (OSError, ValueError):
        pass


def _fail(message: str, code: int) -> int:
    if common.STATE.debug and sys.exc_info()[0] is not None:
        traceback.print_exc()
    try:
        sys.stderr.write(f"gencli: {common.one_line(message)}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    return code


def _usage_message(e) -> str:  # noqa: ANN001
    msg = common.one_line(e.format_message())
    ctx = getattr(e, "ctx", None)
    if ctx is not None and ctx.command_path:
        msg += f" (see `{ctx.command_path} --help`)"
    return msg


def _click_exception_modules() -> list:
    """The exception modules of the click in use (typer >= 0.2x vendors it as typer._click)."""
    import importlib

    found = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            pass
    return found


def _classes(name: str) -> tuple[type, ...]:
    return tuple(getattr(m, name) for m in _click_exception_modules() if hasattr(m, name))


def _handle(e: BaseException) -> int:
    """Map an exception escaping the command to (message on stderr, exit code)."""
    if isinstance(e, _classes("NoArgsIsHelpError")):
        sys.stderr.write(e.format_message() + "\n")
        return 2
    if isinstance(e, _classes("UsageError")):
        return _fail(_usage_message(e), 2)
    if isinstance(e, _classes("Abort") + (typer.Abort,)):
        return _fail("aborted", 1)
    if isinstance(e, _classes("ClickException")):
        return _fail(e.format_message(), int(getattr(e, "exit_code", 1)))
    if isinstance(e, GencliError):
        return _fail(str(e) or type(e).__name__, int(getattr(e, "exit_code", 1)))
    if isinstance(e, BrokenPipeError):
        _silence_stdout()
        return _fail("stdout was closed before all output was written", 1)
    if isinstance(e, MemoryError):
        return _fail("out of memory; try a smaller --batch-size", 1)
    text = common.one_line(str(e))
    return _fail(f"internal error: {type(e).__name__}: {text} (rerun with --debug for the traceback)", 1)


def run(argv: Sequence[str] | None = None) -> int:
    """Run gencli with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    common.reset_state()
    common.STATE.argv = tuple(args)
    if "--debug" in args[: args.index("--") if "--" in args else len(args)]:
        common.STATE.debug = True
    command = typer.main.get_command(app)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            rv = command.main(args=args, prog_name="gencli", standalone_mode=False)
        except KeyboardInterrupt:
            return _fail("interrupted", 130)
        except Exception as e:  # noqa: BLE001 - every failure becomes one line and an exit code
            return _handle(e)
    if rv == 130:  # typer turns Ctrl-C into Exit(130)
        return _fail("interrupted", 130)
    return rv if isinstance(rv, int) else 0


def _silence_stdout() -> None:
    """After a broken pipe, keep Python from complaining again when it flushes stdout at exit."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``gencli``)."""
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
