"""gencli's Python API; the commands are thin wrappers of these functions.

    import gencli
    model = gencli.load("ddpm")                          # the bundled default
    images = model.generate(16, seed=0, steps=50, sampler="ddim")   # (16, 1, 28, 28) in [-1, 1]
    boots = gencli.translate("cyclegan", images)          # sneaker2boot, bundled
    result = gencli.evaluate("fid", "real/", "fake/")     # what `gencli evaluate --json` prints
    gencli.export("ddim", "unet.onnx")                     # the UNet as an ONNX graph (`gencli export`)

``generate`` gives the same images as `gencli sample` with the same seed and batch size.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

from gencli.errors import UsageError


def load(model: str, weights: str | None = None, device: Any = "cpu", precision: str = "fp32", *,
         checkpoint: str | None = None, allow_download: bool = True):
    """A registered model (family or preset name) with its weights, ready for inference.

    ``weights``: a named checkpoint of the family (``"cifar10"``), or any weights reference (a
    file, a run or diffusers folder, ``org/repo[@rev]``, ``hf://...``); None: the family's default.
    The result is a :class:`gencli.models.base.GenerativeModel` with ``.spec`` (its registry entry)
    and ``.metadata`` (the checkpoint's) set; ``precision`` (fp32/fp16/bf16) is the autocast
    dtype its ``generate``/``translate`` calls use.
    """
    from gencli import registry
    from gencli.runtime import PRECISIONS
    from gencli.training.device import resolve_device

    spec = registry.get_family(model)
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if weights is not None and checkpoint is None and registry.names_checkpoint(spec, weights):
        checkpoint, weights = weights, None
    if checkpoint and weights:
        raise UsageError(f"give either a checkpoint name ({checkpoint}) or --weights, not both")
    if checkpoint:
        spec.checkpoint(checkpoint)  # unknown names fail before anything is read
    dev = resolve_device(device) if isinstance(device, str) else device
    net, meta = registry.load_model(model, checkpoint, weights, device=dev, allow_download=allow_download)
    net.spec, net.metadata, net.precision = spec, meta, precision
    return net


def _model(model: Any, capability: str):  # noqa: ANN202
    from gencli import registry

    if isinstance(model, str):
        registry.require_capability(model, capability)
        return load(model)
    spec = getattr(model, "spec", None)
    if spec is not None:
        registry.require_capability(spec.name, capability)
    return model


#: Pixels per batch that `translate` aims for on the CPU when no batch size is given: on a
#: 2-core Zen 4, CycleGAN's resnet_9blocks runs 256x256 images at 0.41 s/image one at a time and
#: 0.43-0.49 s/image four at a time (bench/translate_vs_official.py), while small images gain from batching.
CPU_BATCH_PIXELS = 256 * 256
GPU_BATCH = 16


def auto_batch_size(device: Any, shape: tuple[int, ...]) -> int:
    """The batch size `translate` uses for images of ``shape`` (C, H, W) on ``device`` when none
    is given: 16 on a GPU; on the CPU as many as fit in :data:`CPU_BATCH_PIXELS` (1 at 256x256,
    16 at 64x64), at most 16."""
    import torch

    if torch.device(device).type != "cpu":
        return GPU_BATCH
    return max(1, min(GPU_BATCH, CPU_BATCH_PIXELS // max(1, int(shape[-1]) * int(shape[-2]))))


def iter_translate(model: Any, images: Iterable[Any], *, batch_size: int | None = None, seed: int = 0,
                   **options: Any) -> Iterator[list[Any]]:
    """Translate a stream of (C, H, W) images, yielding the outputs batch by batch (consecutive
    images of one size share a batch; ``batch_size`` None: :func:`auto_batch_size`).
    ``options``: the family's (`gencli translate FAMILY --help`). Stochastic models draw from one
    generator seeded with ``seed``."""
    import torch

    from gencli.runtime import autocast

    net = _model(model, "translate")
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    spec = getattr(net, "spec", None)
    if spec is not None:
        options = spec.check_options("translate", options)
    dev = net.device
    gen = torch.Generator(device=dev).manual_seed(int(seed))

    def run(batch: list[Any]) -> list[Any]:
        x = torch.stack(batch).to(dev)
        with torch.inference_mode(), autocast(dev, net.precision):
            return list(net.translate(x, generator=gen, **options).float().cpu())

    batch: list[Any] = []
    cap = 0
    for x in images:
        if batch and (tuple(x.shape) != tuple(batch[0].shape) or len(batch) == cap):
            yield run(batch)
            batch = []
        if not batch:
            cap = batch_size or auto_batch_size(dev, tuple(x.shape))
        batch.append(x)
    if batch:
        yield run(batch)


def translate(model: Any, images: Any, *, batch_size: int | None = None, seed: int = 0, **options: Any) -> Any:
    """Translate ``images``: a (N, C, H, W) tensor in [-1, 1] gives one tensor; a list of (C, H, W)
    tensors (sizes may differ) gives a list. ``model``: a loaded model or a registered name."""
    import torch

    if isinstance(images, torch.Tensor):
        if images.dim() == 3:
            images = images[None]
        out = [y for ys in iter_translate(model, list(images), batch_size=batch_size, seed=seed, **options)
               for y in ys]
        return torch.stack(out)
    return [y for ys in iter_translate(model, images, batch_size=batch_size, seed=seed, **options) for y in ys]


def export(model: Any, out: Any, *, weights: str | None = None, format: str = "onnx", opset: int | None = None,
           force: bool = False, exporter: str = "auto", check: bool = True, **options: Any) -> dict[str, Any]:
    """Write ``model``'s network (a loaded model, or a registered name loaded with ``weights``) to
    ``out`` as an ONNX graph; what `gencli export` does. ``options``: the family's export options
    (e.g. ``direction="BtoA"``). With ``check`` and onnxruntime installed, the file is run on fresh
    inputs (another batch size than the trace's) and must match the network's forward within
    gencli.exporting.TOLERANCE. Returns a summary: path, inputs, outputs, opset, exporter,
    max_abs_diff (None when not checked), notes."""
    from gencli import exporting

    if format not in exporting.FORMATS:
        raise UsageError(f"--format must be one of {', '.join(exporting.FORMATS)}, got {format!r}")
    if os.path.isdir(os.fspath(out)):
        raise UsageError(f"{out} is a folder; give a file name such as {os.path.join(out, 'model.onnx')}")
    if os.path.exists(os.fspath(out)) and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite")
    exporting.require_onnx()
    if isinstance(model, str):
        from gencli import registry

        registry.require_capability(model, "export_onnx")
        net = load(model, weights)
    else:
        if weights is not None:
            raise UsageError("weights= applies to a model name, not to a loaded model")
        net = _model(model, "export_onnx")
    spec = getattr(net, "spec", None)
    if spec is not None:
        options = spec.check_options("export", options)
    graph = net.export_onnx(**options)
    used = exporting.write_onnx(graph, out, opset=opset, exporter=exporter, force=force)
    diff = exporting.check_onnx(graph, out) if check else None
    if diff is not None and not diff <= exporting.TOLERANCE:
        raise exporting.GencliError(f"{out}: ONNX Runtime's outputs differ from gencli's by {diff:.2e} "
                                    f"(more than {exporting.TOLERANCE:g}); the file was written, but do not "
                                    f"trust it (try another --opset or --exporter)")
    return {"path": os.fspath(out), "format": format, "opset": exporting.DEFAULT_OPSET if opset is None else opset,
            "exporter": used,
            "inputs": {n: [graph.dynamic_axes.get(n, {}).get(i, d) for i, d in enumerate(x.shape)]
                       for n, x in zip(graph.input_names, graph.inputs)},
            "outputs": list(graph.output_names), "max_abs_diff": diff, "metadata": dict(graph.metadata),
            "notes": list(graph.notes)}


def evaluate(metric: str, a: Any = None, b: Any = None, **options: Any) -> dict[str, Any]:
    """Compute ``metric`` (fid, kid, is, pr or all) between a real set ``a`` and a generated set
    ``b`` (folders, globs, files, .npz statistics, dataset names); returns the dict
    `gencli evaluate --json` prints. See :func:`gencli.metrics.evaluate.evaluate` for options."""
    from gencli.metrics.evaluate import evaluate as run

    inputs = [x for x in (a, b) if x is not None]
    return run(metric, [str(x) for x in inputs], **options)
