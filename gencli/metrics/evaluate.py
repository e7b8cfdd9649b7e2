"""`gencli evaluate` as a library function: FID, KID, IS and precision/recall over image sets,
statistics files, datasets or a model's samples. :func:`evaluate` returns the summary dict that
`gencli evaluate --json` prints (see gencli.cli.evaluate for the metrics and their references).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from gencli.errors import UsageError

METRICS = ("fid", "kid", "is", "pr", "all", "nll")
FEATURES = ("inception", "fmnist", "vgg16")
PREPROCESS = ("pytorch-fid", "tf")
DEFAULT_SEED = 2020


def _check_choice(value: str, choices: tuple[str, ...], option: str) -> None:
    if value not in choices:
        raise UsageError(f"{option} must be one of {', '.join(choices)}, got {value!r}")


def _check_positive(value: int | None, option: str, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise UsageError(f"{option} must be at least {minimum}, got {value}")


def evaluate(metric: str, inputs: list[str], *, model: str | None = None, model_weights: str | None = None,
             num_samples: int = 10000, sample_options: dict[str, Any] | None = None,
             features: str | None = None, dims: int | None = None, preprocess: str = "pytorch-fid",
             weights: str | None = None, save_stats: str | None = None, kid_subsets: int = 100,
             kid_subset_size: int = 1000, splits: int = 10, k: int = 3, seed: int = DEFAULT_SEED,
             batch_size: int | None = None, device: Any = "cpu", skip_bad: bool = False, no_cache: bool = False,
             force: bool = False, progress: Callable[[str, int | None], Any] | None = None) -> dict[str, Any]:
    """Compute ``metric`` between ``inputs`` A [B] (or A and ``model``'s samples as B).

    ``sample_options``: the model family's sampling options. ``progress(label, total)`` returns a
    context manager with an ``advance(n)`` method (a progress bar), or None for none.
    Returns the summary (metric values, inputs, features, seed, device, seconds).
    ``nll``: bits/dim of the images of A under ``model`` (gencli.metrics.likelihood); then
    ``sample_options`` are the model's log_likelihood options and ``num_samples`` caps the images.
    """
    import contextlib

    if metric == "nll":
        from gencli.metrics.likelihood import nll

        return _finite(nll(list(inputs or []), model=model, model_weights=model_weights, options=sample_options,
                           seed=seed, batch_size=batch_size, device=device, limit=num_samples,
                           skip_bad=skip_bad, progress=progress))

    from gencli.training.device import resolve_device

    dev = resolve_device(device) if isinstance(device, str) else device
    progress = progress or (lambda label, total: contextlib.nullcontext(_NoBar()))
    t0 = time.perf_counter()
    inputs = list(inputs or [])
    _check_choice(metric, METRICS, "METRIC")
    _check_choice(preprocess, PREPROCESS, "--preprocess")
    if features is not None:
        _check_choice(features, FEATURES, "--features")
    for value, name in ((num_samples, "-n"), (kid_subsets, "--kid-subsets"), (splits, "--splits"),
                        (k, "--k"), (batch_size, "--batch-size")):
        _check_positive(value, name)
    _check_positive(kid_subset_size, "--kid-subset-size", 2)
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    if model_weights and not model:
        raise UsageError("--model-weights needs --model")
    if sample_options and not model:
        raise UsageError("sampling options apply to --model sampling only")
    n_inputs = len(inputs) + (1 if model else 0)
    if len(inputs) > 2:
        raise UsageError(f"evaluate takes at most two inputs (A B), got {len(inputs)}")
    if model and len(inputs) > 1:
        raise UsageError("--model is the second input B: give only A")
    if save_stats is not None:
        if metric != "fid":
            raise UsageError("--save-stats writes FID statistics: use `gencli evaluate fid A --save-stats out.npz`")
        if n_inputs != 1:
            raise UsageError("--save-stats writes the statistics of one input: give exactly one (A or --model)")
        if not save_stats.lower().endswith(".npz"):
            raise UsageError(f"--save-stats {save_stats}: the file name must end in .npz")
        import os

        if os.path.exists(save_stats) and not force:
            raise UsageError(f"{save_stats} exists; pass --force to overwrite")
    elif metric == "is":
        if n_inputs != 1:
            raise UsageError("the Inception Score takes one input (the generated images)")
    elif n_inputs != 2:
        raise UsageError(f"{metric} compares two inputs: give A and B (or A and --model)")
    if features == "vgg16" and metric in ("is",):
        raise UsageError("--features vgg16 has no class logits: the Inception Score needs inception or fmnist")
    if dims is not None and (features or "inception") != "inception":
        raise UsageError("--dims applies to --features inception only")
    if metric in ("is", "all") and dims not in (None, 2048):
        raise UsageError("the Inception Score uses the full network: drop --dims (or use fid/kid)")

    from gencli.metrics import runner
    from gencli.training import distributed

    group = None
    if distributed.env_world()[1] > 1:  # torchrun: each rank takes a share of every input
        dev = distributed.device_for(dev)
        group = distributed.Group(dev)
    sources = [runner.resolve_source(spec) for spec in inputs]
    if model:
        sources.append(_model_source(model, model_weights, num_samples, sample_options or {}, seed, dev,
                                     materialize=metric == "all" and features is None and group is None))

    # which extractor each metric uses
    plan: dict[str, str] = {}
    wanted = ("fid", "kid", "is", "pr") if metric == "all" else (metric,)
    for m in wanted:
        plan[m] = features or ("vgg16" if m == "pr" else "inception")

    from gencli.metrics.features import build_extractor

    names = list(dict.fromkeys(plan.values()))
    extractors: dict[str, Any] = {}
    for name in names:
        # --weights is for the one feature network; with two (all: inception + vgg16), for inception
        w = weights if (len(names) == 1 or name == "inception") else None
        extractors[name] = build_extractor(name, weights=w, device=dev,
                                           dims=dims if name == "inception" else None, resize=preprocess)

    results: dict[str, Any] = {}
    extracted: dict[tuple[str, int], Any] = {}
    is_input = len(sources) - 1  # IS on B (or on the only input)
    for name, ex in extractors.items():
        metrics_here = [m for m, e in plan.items() if e == name]
        for i, src in enumerate(sources):
            need_stats = "fid" in metrics_here
            need_feats = any(m in metrics_here for m in ("kid", "pr"))
            need_logits = "is" in metrics_here and i == is_input
            if not (need_stats or need_feats or need_logits):
                continue
            label = f"{'AB'[i] if len(sources) == 2 else 'A'}: {src.label}"
            with progress(f"{name} {label}", src.count) as bar:
                extracted[(name, i)] = runner.extract(
                    src, ex, need_stats=need_stats, need_features=need_feats, need_logits=need_logits,
                    batch_size=batch_size, on_error="skip" if skip_bad else "fail",
                    use_cache=not no_cache and src.cacheable, progress=bar.advance, group=group)

    from gencli.metrics import stats as stats_mod

    if save_stats is not None:
        ex_name = plan["fid"]
        st = extracted[(ex_name, 0)].stats
        stats_mod.warn_if_few(st.n, st.dims, sources[0].label)
        st.meta.update({"preprocess": preprocess if ex_name == "inception" else None})
        if group is None or group.main:  # one writer under torchrun
            path = stats_mod.save_stats(save_stats, st, force=force)
        else:
            from pathlib import Path

            path = Path(save_stats)
        results["saved_stats"] = str(path)
        results["n"] = st.n
        results["dims"] = st.dims
    else:
        if "fid" in plan:
            ex_name = plan["fid"]
            a, b = extracted[(ex_name, 0)].stats, extracted[(ex_name, 1)].stats
            for st, src in ((a, sources[0]), (b, sources[1])):
                if src.kind != "stats":
                    stats_mod.warn_if_few(st.n, st.dims, src.label)
            results["fid"] = stats_mod.frechet_distance(a.mu, a.sigma, b.mu, b.sigma, a.n, b.n, a.root, b.root)
        if "kid" in plan:
            from gencli.metrics.kid import kernel_inception_distance

            ex_name = plan["kid"]
            r = kernel_inception_distance(extracted[(ex_name, 0)].features, extracted[(ex_name, 1)].features,
                                          subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
            results.update(kid_mean=r.mean, kid_std=r.std, kid_subsets=r.subsets, kid_subset_size=r.subset_size)
        if "is" in plan:
            from gencli.metrics.inception_score import inception_score

            r = inception_score(extracted[(plan["is"], is_input)].logits, splits=splits, seed=seed)
            results.update(is_mean=r.mean, is_std=r.std, is_splits=r.splits)
        if "pr" in plan:
            from gencli.metrics.prd import precision_recall

            ex_name = plan["pr"]
            r = precision_recall(extracted[(ex_name, 0)].features, extracted[(ex_name, 1)].features, k=k)
            results.update(precision=r.precision, recall=r.recall, f_score=r.f_score, k=r.k)

    seconds = time.perf_counter() - t0
    inputs_info = []
    for i, src in enumerate(sources):
        got = [v for (name, j), v in extracted.items() if j == i]
        n = got[0].n if got else src.count
        inputs_info.append({"input": src.label, "kind": src.kind, "n": n,
                            "cached": bool(got) and all(v.cached for v in got)})
    summary: dict[str, Any] = {"metric": metric, **results,
                               "features": {m: plan[m] for m in plan} if metric == "all" else plan[metric],
                               "inputs": inputs_info, "seed": seed, "device": str(dev),
                               "seconds": round(seconds, 3)}
    if "inception" in extractors:
        summary["preprocess"] = preprocess
        summary["dims"] = extractors["inception"].dims
    return _finite(summary)




class _NoBar:
    def advance(self, n: int = 1) -> None: ...


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _model_source(name: str, weights: str | None, n: int, options: dict[str, Any], seed: int, dev: Any,
                  materialize: bool):
    """A runner source drawing ``n`` images from a registered model (8-bit, as saved PNGs): the
    images `gencli sample` draws with the same seed (image i the same whatever the batch size or
    the number of ranks, for families with per-image noise)."""
    import torch

    from gencli import api, registry
    from gencli.metrics import runner

    family, _, checkpoint = name.partition(":")
    spec = registry.require_capability(family, "sample")
    opts = spec.check_options("sample", options)
    net = api.load(family, weights, dev, checkpoint=checkpoint or None)

    def sample_fn(indices: range):
        for _, _, x in net.iter_generate(n, seed, batch_size=runner.SAMPLE_BATCH, indices=indices, **opts):
            yield x.float()

    label = f"{name} samples"
    if not materialize:
        return runner.samples_source(label, n, sample_fn)
    # `all` runs two feature networks over the same samples: draw them once, keep them as 8-bit
    from gencli.io.tensor_dataset import TensorImageDataset

    chunks = [((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu() for x in sample_fn(range(n))]
    ds = TensorImageDataset(torch.cat(chunks), None, None, name)
    return runner.Source("dataset", label, count=n, dataset=ds, cacheable=False)
