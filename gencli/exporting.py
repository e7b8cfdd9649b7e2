"""Writing a family's network as an ONNX graph, and checking it in ONNX Runtime.

A family says what to export (``GenerativeModel.export_onnx`` -> :class:`OnnxGraph`: the module in
plain fp32 eval mode, example inputs, names, the dynamic axes); this module traces it with
``torch.onnx.export``, adds the graph's metadata (family, config, schedule ...) to
``metadata_props``, writes the file atomically, and -- when onnxruntime is installed -- runs the
file on fresh inputs with another batch size than the trace's and reports the max abs difference
to the module's own forward pass.

Exporters: ``torchscript`` (torch's TorchScript-based exporter; deprecated since torch 2.9 but
still there, and 3-4x faster to export: ~6 s against ~25 s for the tiny test UNet on a loaded
2-core machine) or ``dynamo`` (torch.export + onnxscript, torch's default). ``auto`` uses
``torchscript`` and falls back to ``dynamo`` where torch no longer has it. Both give the same
outputs (max abs diff ~1e-6 against gencli's forward on the test UNet).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from gencli.errors import GencliError, UsageError

FORMATS = ("onnx",)
EXPORTERS = ("auto", "torchscript", "dynamo")
DEFAULT_OPSET = 18
#: the largest max abs difference to gencli's forward the check accepts (fp32)
TOLERANCE = 1e-4


def require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise GencliError("ONNX export needs the onnx package: pip install onnx onnxscript "
                          "(or pip install 'gencli[onnx]')") from None
    return onnx


@contextlib.contextmanager
def _quiet_exporter():
    """The exporters print progress to stdout and log/warn a lot; results go to stdout only when
    asked, so all of that is swallowed (the check afterwards says whether the graph is right)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export(graph: Any, path: str, opset: int, exporter: str) -> None:
    import torch

    args = dict(input_names=list(graph.input_names), output_names=list(graph.output_names), opset_version=opset)
    if exporter == "torchscript":
        torch.onnx.export(graph.module, graph.inputs, path, dynamo=False, dynamic_axes=graph.dynamic_axes,
                          do_constant_folding=True, **args)
        return
    dims: dict[str, Any] = {}
    shapes = []
    for name in graph.input_names:
        axes = graph.dynamic_axes.get(name, {})
        shapes.append({i: dims.setdefault(label, torch.export.Dim(label)) for i, label in axes.items()} or None)
    program = torch.onnx.export(graph.module, graph.inputs, dynamo=True, dynamic_shapes=tuple(shapes),
                                optimize=True, **args)
    program.save(path)


def write_onnx(graph: Any, out: str | os.PathLike, *, opset: int | None = None, exporter: str = "auto",
               force: bool = False) -> str:
    """Trace ``graph`` (an OnnxGraph) into ``out``; returns the exporter used. Refuses to
    overwrite ``out`` without ``force``; writes a temporary file beside it and renames it."""
    onnx = require_onnx()
    import torch

    if exporter not in EXPORTERS:
        raise UsageError(f"--exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if opset < 9:
        raise UsageError(f"--opset must be at least 9, got {opset}")
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"{out} is a folder; give a file name such as {out}/model.onnx")
    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite")
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {out}: folder {out.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
        first_error: BaseException | None = None
        used = None
        for name in order:
            try:
                with _quiet_exporter(), torch.no_grad():
                    _export(graph, tmp, opset, name)
                used = name
                break
            except Exception as e:  # noqa: BLE001 - reported below, in one line
                first_error = first_error or e
                if name == "dynamo" and isinstance(e, ImportError):
                    first_error = GencliError("the dynamo exporter needs onnxscript: pip install onnxscript")
        if used is None:
            if isinstance(first_error, GencliError):
                raise first_error
            raise GencliError(f"ONNX export failed (opset {opset}): {type(first_error).__name__}: "
                              f"{first_error}") from first_error
        model = onnx.load(tmp)
        for key, value in graph.metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, str(value)
        model.producer_name = "gencli"
        onnx.save(model, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return used


def check_inputs(graph: Any, batch: int = 3, seed: int = 1) -> tuple[Any, ...]:
    """Fresh inputs for ``graph`` with ``batch`` items: float inputs drawn anew, integer ones (time
    steps, labels) the example values repeated, so they stay in range."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for x in graph.inputs:
        if x.is_floating_point():
            out.append(torch.randn((batch, *x.shape[1:]), generator=g, dtype=x.dtype))
        else:
            reps = -(-batch // x.shape[0])
            out.append(x.repeat(reps, *([1] * (x.dim() - 1)))[:batch].clone())
    return tuple(out)


def run_onnxruntime(path: str | os.PathLike, feeds: dict[str, Any], threads: int | None = None) -> list[Any]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def check_onnx(graph: Any, path: str | os.PathLike, *, batch: int = 3) -> float | None:
    """Max abs difference between ONNX Runtime running ``path`` and ``graph.module`` on fresh
    inputs of ``batch`` items (not the traced batch size: this checks the dynamic batch too);
    None when onnxruntime is not installed."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    import torch

    inputs = check_inputs(graph, batch)
    with torch.no_grad():
        ref = graph.module(*inputs)
    refs = ref if isinstance(ref, (tuple, list)) else (ref,)
    got = run_onnxruntime(path, {n: x.numpy() for n, x in zip(graph.input_names, inputs)})
    return max(float((torch.from_numpy(o) - r.float()).abs().max()) for o, r in zip(got, refs))
