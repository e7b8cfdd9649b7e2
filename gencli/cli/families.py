"""Family options on the command line, read from the family's spec (never named here).

A command that takes family options declares its generic options with Typer and collects the
rest of its command line (positionals and unknown options, in order) in one variadic argument;
:func:`split_args` then reads the family's options from it with the spec's schema, and
:class:`FamilyCommand` adds them to ``gencli COMMAND FAMILY --help``.
"""

from __future__ import annotations

from typing import Any, Sequence

import typer.core

from gencli.errors import UsageError

META_KEY = "gencli.family"


def _registry():  # noqa: ANN202 - imported lazily (the specs are torch-free, but keep --help lean)
    from gencli import registry

    return registry


_METAVARS = {"int": "N", "float": "X", "list[int]": "N", "list[float]": "X"}


class GencliCommand(typer.core.TyperCommand):
    """Typer's command with plain metavars in help (``MODEL``, ``-n N``, ``--out TEXT``), not
    ``{MODEL}`` / ``<list[str]>``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for p in self.params:
            if p.param_type_name == "argument":
                name = p.metavar or p.name.upper()
                shown = name if p.required or name.startswith("[") else f"[{name}]"
                shown += "..." if p.nargs != 1 and p.metavar is None else ""
                p.display_type_rich = lambda ctx: None
                p._usage_display_name = lambda shown=shown: shown
            elif p.metavar is None and not getattr(p, "is_flag", False) and not getattr(p, "count", False):
                p.metavar = _METAVARS.get(p.bare_type(), "TEXT")


class FamilyCommand(GencliCommand):
    """A command whose help, given a family (``gencli sample NAME --help``), also lists the
    options of that family for this command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        names = _registry().FAMILIES
        family = next((a for a in args if a in names), None)
        if family is not None:
            ctx.meta[META_KEY] = family
        return super().parse_args(ctx, args)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        super().format_help(ctx, formatter)
        command = ctx.info_name
        registry = _registry()
        family = ctx.meta.get(META_KEY)
        if family is not None:
            options = registry.get_family(family).options_for(command)
            with formatter.section(f"Options of {family}"):
                if options:
                    formatter.write_dl([(f"{o.flag} {o.metavar}".rstrip(), o.describe()) for o in options])
                else:
                    formatter.write_text(f"{family} has no {command} options of its own.")
            return
        rows = []
        for name, spec in registry.FAMILIES.items():
            flags = ", ".join(o.flag for o in spec.options_for(command))
            if flags and (command == "train" or command in spec.capabilities):
                rows.append((name, flags))
        if rows:
            with formatter.section("Family options (details: gencli " + command + " FAMILY --help)"):
                formatter.write_dl(rows)


def split_args(spec: Any, command: str, args: Sequence[str], *, positionals: int | None = None,
               what: str = "argument") -> tuple[list[str], dict[str, Any]]:
    """(positional arguments, checked family options) from the variadic rest of a command line.

    ``positionals`` caps the positional count (None: any). An option the family does not have is a
    usage error naming the ones it has; the option values are checked by the spec's schema and its
    defaults (a preset's too) filled in. An option given twice takes its last value, as the
    command's own options do.
    """
    found: list[str] = []
    given: dict[str, Any] = {}
    items = list(args)
    i = 0
    only_positionals = False
    while i < len(items):
        token = items[i]
        i += 1
        if only_positionals or token == "-" or not token.startswith("-"):
            found.append(token)
            continue
        if token == "--":
            only_positionals = True
            continue
        flag, eq, value = token.partition("=")
        opt = next((o for o in spec.options_for(command) if o.flag == flag), None)
        if opt is None:
            raise UsageError(spec.unknown_option_message(command, flag))
        if not opt.takes_value:
            given[opt.name] = opt.parse(value) if eq else True
            continue
        if not eq:
            if i >= len(items):
                raise UsageError(f"{flag} needs a value ({opt.metavar})")
            value = items[i]
            i += 1
        given[opt.name] = value
    if positionals is not None and len(found) > positionals:
        extra = found[positionals]
        raise UsageError(f"unexpected {what} {extra!r}" + (f" (takes at most {positionals})" if positionals else ""))
    return found, spec.check_options(command, given)
