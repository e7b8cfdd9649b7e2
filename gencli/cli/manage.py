"""`gencli models`, `gencli pull` and `gencli convert`: the registry, the cache, foreign formats."""

from __future__ import annotations

import importlib
import os
from typing import Annotated, Any, Optional

import typer

from gencli import formats
from gencli.cli import common
from gencli.errors import GencliError, UsageError

#: KIND -> "module:function" with ``function(src: str, out: str, *, force: bool) -> Path``, made
#: from the formats table (gencli.formats). Modules are imported only when their KIND is asked for.
CONVERTERS: dict[str, str] = formats.converter_targets()


# --- models ----------------------------------------------------------------------------------
def _availability(spec: Any, ref: Any) -> tuple[bool, str | None]:
    """(available locally, local path) for a named checkpoint, without any download."""
    from gencli import registry

    kind, _, where = ref.source.partition(":")
    try:
        if kind == "url" and ref.format == "gencli":  # a plain download (resolving it would fetch it)
            from pathlib import Path

            from gencli.paths import download_path

            dest = download_path(spec.family, Path(where).name)
            return dest.is_file(), str(dest) if dest.is_file() else None
        path, _ = registry.resolve_checkpoint(spec, ref.name, allow_download=False)
        return True, str(path)
    except GencliError:
        return False, None


def _describe(spec: Any) -> dict[str, Any]:
    checkpoints = []
    for ref in spec.checkpoints:
        available, path = _availability(spec, ref)
        checkpoints.append({"name": ref.name, "source": ref.source, "format": ref.format,
                            "dataset": ref.dataset, "description": ref.description,
                            "default": ref.name == spec.default_checkpoint,
                            "available": available, "path": path})
    return {"name": spec.name, "family": spec.family, "description": spec.description, "data": spec.data,
            "capabilities": list(spec.capabilities), "default_checkpoint": spec.default_checkpoint,
            "options": {cmd: [o.flag for o in opts] for cmd, opts in spec.options.items()},
            "sample_defaults": dict(spec.preset_defaults.get("sample", {})), "checkpoints": checkpoints}


def models(
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """List the model families, their capabilities and named checkpoints (and which are local)."""
    from gencli import registry

    families = [_describe(registry.get_family(name)) for name in registry.family_names()]
    if json_out:
        common.print_json(families)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, markup=False)
    fams = Table(title="model families", title_justify="left")
    for col in ("family", "capabilities", "default", "description"):
        fams.add_column(col, overflow="fold")
    for fam in families:
        shared = registry.checkpoint_family(fam["name"])
        desc = fam["description"] + (f" (uses the {shared} checkpoints)" if shared != fam["name"] else "")
        fams.add_row(fam["name"], ", ".join(fam["capabilities"]) or "-", fam["default_checkpoint"] or "-", desc)
    console.print(fams)
    cks = Table(title="named checkpoints (local: usable without a download)", title_justify="left")
    for col in ("family", "checkpoint", "local", "format", "source"):
        cks.add_column(col, overflow="fold")
    for fam in families:
        if registry.checkpoint_family(fam["name"]) != fam["name"]:
            continue
        for ck in fam["checkpoints"]:
            name = ck["name"] + (" *" if ck["default"] else "")
            cks.add_row(fam["name"], name, "yes" if ck["available"] else "no", ck["format"], ck["source"])
    console.print(cks)
    console.print("* default checkpoint. Sample: gencli sample FAMILY [CHECKPOINT] -o samples.png; "
                  "download: gencli pull FAMILY CHECKPOINT; details: gencli models --json")


# --- pull ------------------------------------------------------------------------------------
def pull(
    ref: Annotated[str, typer.Argument(
        metavar="MODEL|REF", help="A family (with an optional checkpoint name), or a Hub reference "
        "org/repo[@rev] / hf://org/repo/path.")],
    checkpoint: Annotated[Optional[str], typer.Argument(metavar="CHECKPOINT",
        help="Named checkpoint of the family (default: the family's default).")] = None,
    refresh: Annotated[bool, typer.Option(
        "--refresh", help="Hub references: ask for the newest commit even when cached.")] = False,
    quiet_: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.")] = False,
) -> None:
    """Fetch a checkpoint into the cache (Hugging Face cache for Hub files) and print its local path."""
    from gencli import hub, registry
    from gencli.metrics.weights import NETWORKS, resolve_network_weights

    if ref in NETWORKS:  # the metric networks of `gencli evaluate`
        if checkpoint is not None:
            raise UsageError(f"{ref} has no named checkpoints")
        path = resolve_network_weights(ref, allow_download=True)
        label = ref
    elif ref in registry.FAMILIES:
        spec = registry.get_family(ref)
        if checkpoint:
            spec.checkpoint(checkpoint)
        path, _ = registry.resolve_checkpoint(spec, checkpoint, allow_download=True)
        label = f"{ref} {checkpoint or spec.default_checkpoint}"
    else:
        if checkpoint is not None:
            raise UsageError(f"unknown model {ref!r}; known: {', '.join(registry.FAMILIES)} "
                             "(a Hub reference takes no checkpoint name)")
        if hub.parse_hub_ref(ref) is None:
            raise UsageError(f"{ref!r} is neither a model ({', '.join(registry.FAMILIES)}), a metric "
                             f"network ({', '.join(NETWORKS)}) nor a Hub reference (org/repo[@rev] or "
                             "hf://org/repo/path)")
        path = hub.resolve(ref, allow_download=True, refresh=refresh,
                           progress=common.show_progress(quiet_))
        label = ref
    common.info(f"pulled {label} -> {path}", quiet_)
    typer.echo(str(path))


# --- convert ---------------------------------------------------------------------------------
def _converter(kind: str):
    if kind not in CONVERTERS and kind in formats.FORMATS:
        raise UsageError(f"{kind} is gencli's own format: nothing to convert (use the file with --weights)")
    if kind not in CONVERTERS:
        raise UsageError(f"unknown converter {kind!r}; known: {', '.join(sorted(CONVERTERS))}")
    module, _, func = CONVERTERS[kind].partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        missing = e.name or "?"
        if missing == module or module.startswith(missing + "."):
            raise GencliError(f"the {kind} converter is not available in this build ({module} is missing)") from None
        raise GencliError(f"the {kind} converter needs the Python package {missing!r}: "
                          f"pip install {missing.split('.')[0]}") from None
    fn = getattr(mod, func, None)
    if fn is None:
        raise GencliError(f"the {kind} converter is not available in this build ({CONVERTERS[kind]} is missing)")
    return fn


def convert(
    kind: Annotated[str, typer.Argument(help=f"What SRC is: {', '.join(sorted(CONVERTERS))}.")],
    src: Annotated[str, typer.Argument(help="The foreign checkpoint: a file, folder, org/repo or hf://...")],
    out: Annotated[str, typer.Option("-o", "--out", help="The gencli .safetensors file to write.")],
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite OUT.")] = False,
    quiet_: Annotated[bool, typer.Option("--quiet", "-q", help="No summary on stderr.")] = False,
) -> None:
    fn = _converter(kind)
    if out == "-":
        raise UsageError("convert writes a file: pass -o FILE.safetensors")
    if os.path.exists(out) and not force and not os.path.isdir(out):
        raise UsageError(f"{out} exists; pass --force to overwrite")
    path = fn(src, out, force=force)
    common.info(f"wrote {path}; use it with: --weights {path}", quiet_)


convert.__doc__ = "\n".join([
    "Convert a foreign checkpoint (a diffusers UNet2DModel folder, ...) to gencli safetensors.",
    "",
    "KIND is one of these formats (gencli.formats):",
    "",
    "\b",  # click: keep the table's line breaks
    *(f"  {line}" for line in formats.describe_table()),
])
