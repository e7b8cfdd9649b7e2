"""`gencli export`: write a model's network as an ONNX graph (the families with "export_onnx")."""

from __future__ import annotations

import os
import time
from typing import Annotated, List, Optional

import typer

from gencli.cli import common, families
from gencli.errors import UsageError


def export(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A model that can export (see `gencli models`).")],
    rest: Annotated[Optional[List[str]], typer.Argument(metavar="[CHECKPOINT] [FAMILY OPTIONS]",
        help="A named checkpoint of the family (default: the family's default), and the family's own "
        "options (listed by `gencli export MODEL --help`).", show_default=False)] = None,
    weights: Annotated[Optional[str], typer.Option(
        "--weights", "-w", help="Any weights reference: a file, a run or diffusers folder, org/repo[@rev], hf://...")] = None,
    format_: Annotated[str, typer.Option("--format", help="Graph format: onnx.")] = "onnx",
    out: Annotated[Optional[str], typer.Option("-o", "--out", help="The file to write, e.g. model.onnx.")] = None,
    opset: Annotated[Optional[int], typer.Option("--opset", help="ONNX opset version [default: 18].")] = None,
    exporter: Annotated[str, typer.Option(
        "--exporter", help="auto, torchscript or dynamo (torch.onnx's two exporters; auto: torchscript where "
        "torch still has it).")] = "auto",
    check: Annotated[bool, typer.Option(
        "--check/--no-check", help="Run the file in ONNX Runtime (when installed) and compare with gencli's "
        "forward pass (max abs diff <= 1e-4).")] = True,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing file.")] = False,
    quiet_: Annotated[bool, typer.Option("--quiet", "-q", help="No summary on stderr.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Export a model's network as an ONNX graph (for ONNX Runtime, OpenVINO, ...).

    The graph is the network alone in fp32 (a diffusion model's UNet, a translation model's
    generator), with a dynamic batch axis; the sampling loop stays outside (see the README).
    """
    from gencli import api, exporting, registry

    spec = registry.require_capability(model, "export_onnx")
    found, opts = families.split_args(spec, "export", rest or [], positionals=1, what="checkpoint")
    checkpoint = found[0] if found else None
    if checkpoint and not weights:
        spec.checkpoint(checkpoint)  # unknown names fail before anything is loaded
    common.check_choice(format_, exporting.FORMATS, "--format")
    common.check_choice(exporter, exporting.EXPORTERS, "--exporter")
    if out is None:
        raise UsageError("no output given: pass -o FILE.onnx")
    if out == "-":
        raise UsageError("an ONNX graph is not written to stdout: pass -o FILE.onnx")
    if opset is not None and opset < 9:
        raise UsageError(f"--opset must be at least 9, got {opset}")
    if os.path.isdir(out):
        raise UsageError(f"{out} is a folder; give a file name such as {os.path.join(out, 'model.onnx')}")
    if os.path.exists(out) and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite")
    exporting.require_onnx()

    t0 = time.perf_counter()
    net = common.load_model(model, checkpoint, weights, "cpu")
    summary = api.export(net, out, format=format_, opset=opset, force=force, exporter=exporter, check=check,
                         **opts)
    for note in summary["notes"]:
        common.note(f"warning: {note}")
    if json_out:
        common.print_json(summary)
    diff = summary["max_abs_diff"]
    checked = ("not checked (onnxruntime is not installed)" if diff is None and check else
               "not checked" if diff is None else f"ONNX Runtime matches gencli, max abs diff {diff:.1e}")
    shapes = ", ".join(f"{n} ({', '.join(map(str, s))})" for n, s in summary["inputs"].items())
    common.info(f"wrote {out} ({model}, opset {summary['opset']}, {summary['exporter']} exporter; inputs: {shapes}; "
                f"{checked}; {time.perf_counter() - t0:.1f} s)", quiet_)
