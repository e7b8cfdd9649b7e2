"""`gencli evaluate nll`: negative log-likelihood in bits/dim of images under a model with the
``log_likelihood`` capability (VAEs: the IWAE bound; flows: dequantised density; PixelCNN: exact).

Convention (the standard one, see README "Likelihoods and bits/dim"): 8-bit data x, dequantised
y = (x + u) / 256 with u ~ U[0, 1)^D; for a density p over y in [0, 1]^D,
``bits/dim = (NLL_nats(y) / D + ln 256) / ln 2``; a discrete model reports -log2 P(x) / D.
Each model's ``log_likelihood`` returns log P(x) (nats per image) in this convention, so bits/dim
is ``-log P(x) / (D ln 2)`` for every family; nats/image is ``-log P(x)``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from gencli.errors import InputError, UsageError


def nll(inputs: list[str], *, model: str, model_weights: str | None = None,
        options: dict[str, Any] | None = None, seed: int = 0, batch_size: int | None = None,
        device: Any = "cpu", limit: int | None = None, skip_bad: bool = False,
        progress: Callable[[str, int | None], Any] | None = None) -> dict[str, Any]:
    """Bits/dim of the images of ``inputs`` (one folder, glob, file list or dataset[:split]) under
    ``model`` (NAME or NAME:CHECKPOINT, weights ``model_weights``). ``options``: the family's
    log_likelihood options. ``limit``: use at most this many images (in order)."""
    import contextlib

    import torch

    from gencli import api, registry
    from gencli.metrics import runner
    from gencli.models.layers.distributions import bits_per_dim

    t0 = time.perf_counter()
    if not model:
        raise UsageError("nll needs --model NAME: the model whose likelihood is measured")
    if len(inputs) != 1:
        raise UsageError(f"nll takes one input (the images), got {len(inputs)}")
    family, _, checkpoint = model.partition(":")
    spec = registry.require_capability(family, "log_likelihood")
    opts = spec.check_options("log_likelihood", options or {})
    net = api.load(family, model_weights, device, checkpoint=checkpoint or None)
    src = runner.resolve_source(inputs[0])
    if src.kind not in ("images", "dataset"):
        raise UsageError(f"nll needs images or a dataset, not {src.kind} ({src.label})")
    n_total = src.count if limit is None else min(src.count, limit)
    bs = batch_size or 100
    progress = progress or (lambda label, total: contextlib.nullcontext(_NoBar()))
    gen = torch.Generator(device=net.device).manual_seed(int(seed))
    shape = (net.channels, net.image_size, net.image_size)
    dims = math.prod(shape)

    def batches():
        if src.kind == "dataset":
            ds = src.dataset.with_format(net.channels) if hasattr(src.dataset, "with_format") else src.dataset
            for lo in range(0, n_total, bs):
                x, y = ds.batch(slice(lo, min(lo + bs, n_total)))
                yield x, y
            return
        from gencli.io.images import load_image

        batch: list[Any] = []
        for p in src.paths[:n_total]:
            try:
                batch.append(load_image(p, channels=net.channels))
            except InputError as e:
                if skip_bad:
                    continue
                raise InputError(f"{e} (pass --skip-bad to skip unreadable images)") from None
            if len(batch) == bs:
                yield torch.stack(batch), None
                batch = []
        if batch:
            yield torch.stack(batch), None

    values = []
    with progress(f"nll {src.label}", n_total) as bar, torch.inference_mode():
        for x, y in batches():
            if tuple(x.shape[1:]) != shape:
                raise InputError(f"{src.label}: images of shape {tuple(x.shape[1:])}, {family} takes {shape}")
            extra = {}
            if net.num_classes:
                if y is None or bool((y < 0).any()):
                    raise UsageError(f"this {family} checkpoint is class-conditional: its likelihood needs "
                                     f"labelled data (a dataset such as fashion-mnist:test)")
                extra["class_labels"] = y.to(net.device)
            ll = net.log_likelihood(x.to(net.device), gen, **opts, **extra).double().cpu()
            if not bool(torch.isfinite(ll).all()):
                raise InputError(f"{src.label}: the model gave a non-finite likelihood")
            values.append(ll)
            bar.advance(x.shape[0])
    if not values:
        raise InputError(f"{src.label}: no images")
    ll = torch.cat(values)
    bpd = bits_per_dim(ll, dims)
    n = int(ll.numel())
    summary = {
        "metric": "nll",
        "bits_per_dim": float(bpd.mean()),
        "bits_per_dim_sem": float(bpd.std() / math.sqrt(n)) if n > 1 else 0.0,
        "nats_per_image": float(-ll.mean()),
        "n": n, "dims": dims, "model": model, "input": src.label,
        "options": opts, "seed": seed, "device": str(net.device),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return summary


class _NoBar:
    def advance(self, n: int = 1) -> None: ...
