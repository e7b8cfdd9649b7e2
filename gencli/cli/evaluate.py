"""`gencli evaluate fid|kid|is|pr|all A [B]`: the standard sample-quality metrics.

Inputs (A = the real/reference set, B = the generated set): folders, globs or image files;
``.npz`` statistics (``mu``/``sigma``, pytorch-fid's or ``--save-stats``'s; FID only); a
registered dataset (``fashion-mnist``, ``fashion-mnist:test``, ``mnist``); or ``--model NAME``,
which samples ``-n`` images on the fly as B.

Metrics and their references:

* ``fid``: Frechet Inception Distance (Heusel et al. 2017), numbers as pytorch-fid's
  ``calculate_fid_given_paths`` (``--preprocess pytorch-fid``, the default) or torch-fidelity's
  (``--preprocess tf``), on pool3 features of the FID InceptionV3 (``--dims`` 64/192/768/2048);
* ``kid``: Kernel Inception Distance (Binkowski et al. 2018), torch-fidelity's estimator: cubic
  polynomial kernel, 100 subsets of 1000, seeded (``--seed``, default 2020 as torch-fidelity);
* ``is``: Inception Score (Salimans et al. 2016), torch-fidelity's: logits without bias, 10 splits,
  shuffled with ``--seed``; computed on B (or on the only input);
* ``pr``: improved precision/recall (Kynkaanniemi et al. 2019), k=3, on VGG16 fc2 features as
  torch-fidelity (``--features vgg16``, the default for pr);
* ``all``: fid, kid, is (on B) and pr.

``--features fmnist`` uses gencli's bundled Fashion-MNIST classifier instead (offline, for 28x28
grey images; its numbers are not comparable with Inception-based ones).
Results: a small table on stderr, or (instead) one JSON object on stdout with ``--json``.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any, List, Optional

import typer

from gencli.cli import common
from gencli.errors import UsageError

METRICS = ("fid", "kid", "is", "pr", "all")
FEATURES = ("inception", "fmnist", "vgg16")
PREPROCESS = ("pytorch-fid", "tf")
DEFAULT_SEED = 2020


def evaluate(
    metric: Annotated[str, typer.Argument(metavar="METRIC", help="fid, kid, is, pr or all.")],
    inputs: Annotated[Optional[List[str]], typer.Argument(
        metavar="A [B]", help="Real then generated: folders, globs, files, .npz statistics, or a dataset "
        "name (fashion-mnist, fashion-mnist:test, mnist).", show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="Sample B on the fly from this model: FAMILY or FAMILY:CHECKPOINT (e.g. ddpm).")] = None,
    model_weights: Annotated[Optional[str], typer.Option(
        "--model-weights", help="Weights reference of --model (file, folder, org/repo, hf://...).")] = None,
    num_samples: Annotated[int, typer.Option(
        "-n", "--num-samples", help="How many images --model draws.")] = 10000,
    sampler: Annotated[Optional[str], typer.Option("--sampler", help="--model: ddpm or ddim.")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="--model: sampling steps.")] = None,
    features: Annotated[Optional[str], typer.Option(
        "--features", help="inception (default; vgg16 for pr), fmnist (bundled, 28x28 grey) or vgg16.")] = None,
    dims: Annotated[Optional[int], typer.Option(
        "--dims", help="Inception features: 64, 192, 768 or 2048 (pool3, default).")] = None,
    preprocess: Annotated[str, typer.Option(
        "--preprocess", help="pytorch-fid (bilinear to 299, 2x-1; default) or tf (TF1 resize, (x-128)/128, "
        "as torch-fidelity).")] = "pytorch-fid",
    weights: Annotated[Optional[str], typer.Option(
        "--weights", "-w", help="Feature network weights: a .safetensors, pytorch-fid's .pth, org/repo or hf://...")] = None,
    save_stats: Annotated[Optional[str], typer.Option(
        "--save-stats", help="Write the mu/sigma of the single input to this .npz (pytorch-fid compatible).")] = None,
    kid_subsets: Annotated[int, typer.Option("--kid-subsets", help="KID: number of subsets.")] = 100,
    kid_subset_size: Annotated[int, typer.Option("--kid-subset-size", help="KID: images per subset.")] = 1000,
    splits: Annotated[int, typer.Option("--splits", help="IS: number of splits.")] = 10,
    k: Annotated[int, typer.Option("--k", help="Precision/recall: k-th nearest neighbour.")] = 3,
    seed: Annotated[int, typer.Option(
        "--seed", help="Seed of KID subsets, IS shuffling and --model sampling (2020: torch-fidelity's).")] = DEFAULT_SEED,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", help="Images per batch.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")] = "auto",
    skip_bad: Annotated[bool, typer.Option(
        "--skip-bad", help="Skip unreadable images with a warning (default: fail naming the file).")] = False,
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="Do not read or write cached statistics.")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite --save-stats.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    quiet_: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or table on stderr.")] = False,
) -> None:
    """Compute FID, KID, IS, precision/recall (or all) between a real set A and a generated set B.

    Default preprocessing is pytorch-fid's (bilinear resize to 299, align_corners=False, 2x-1);
    --preprocess tf reproduces torch-fidelity/TensorFlow. Statistics of inputs are cached by
    content (see --no-cache).
    """
    t0 = time.perf_counter()
    inputs = list(inputs or [])
    common.check_choice(metric, METRICS, "METRIC")
    common.check_choice(preprocess, PREPROCESS, "--preprocess")
    if features is not None:
        common.check_choice(features, FEATURES, "--features")
    for value, name in ((num_samples, "-n"), (kid_subsets, "--kid-subsets"), (splits, "--splits"),
                        (k, "--k"), (batch_size, "--batch-size"), (steps, "--steps")):
        common.check_positive(value, name)
    common.check_positive(kid_subset_size, "--kid-subset-size", 2)
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    if model_weights and not model:
        raise UsageError("--model-weights needs --model")
    if (sampler or steps) and not model:
        raise UsageError("--sampler/--steps apply to --model sampling only")
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

    sources = [runner.resolve_source(spec) for spec in inputs]
    dev = common.device_of(device)
    if model:
        sources.append(_model_source(model, model_weights, num_samples, sampler, steps, seed, dev,
                                     materialize=metric == "all" and features is None))

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

    show = common.show_progress(quiet_)
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
            with common.progress_bar(f"{name} {label}", total=src.count, enabled=show) as bar:
                extracted[(name, i)] = runner.extract(
                    src, ex, need_stats=need_stats, need_features=need_feats, need_logits=need_logits,
                    batch_size=batch_size, on_error="skip" if skip_bad else "fail",
                    use_cache=not no_cache and src.cacheable, progress=bar.advance)

    from gencli.metrics import stats as stats_mod

    if save_stats is not None:
        ex_name = plan["fid"]
        st = extracted[(ex_name, 0)].stats
        stats_mod.warn_if_few(st.n, st.dims, sources[0].label)
        st.meta.update({"preprocess": preprocess if ex_name == "inception" else None})
        path = stats_mod.save_stats(save_stats, st, force=force)
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
            results["fid"] = stats_mod.frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
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
    if json_out:
        common.print_json(_finite(summary))
    elif not common.quiet(quiet_):
        _print_table(metric, results, summary)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _print_table(metric: str, results: dict[str, Any], summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=None, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if "saved_stats" in results:
        table.add_row("statistics", f"{results['saved_stats']} ({results['n']} images, {results['dims']}-d)")
    if "fid" in results:
        table.add_row("FID" if summary.get("features") != "fmnist" else "FD (fmnist)", f"{results['fid']:.4f}")
    if "kid_mean" in results:
        table.add_row("KID", f"{results['kid_mean']:.6f} ± {results['kid_std']:.6f}")
    if "is_mean" in results:
        table.add_row("IS", f"{results['is_mean']:.4f} ± {results['is_std']:.4f}")
    if "precision" in results:
        table.add_row("precision", f"{results['precision']:.4f}")
        table.add_row("recall", f"{results['recall']:.4f}")
    for i, info in enumerate(summary["inputs"]):
        tag = "AB"[i] if len(summary["inputs"]) == 2 else "A"
        cached = ", cached" if info["cached"] else ""
        table.add_row(f"input {tag}", f"{info['input']} ({info['n']} images{cached})")
    feats = summary["features"]
    feats = feats if isinstance(feats, str) else ", ".join(f"{k}: {v}" for k, v in feats.items())
    extra = f", {summary['preprocess']}, {summary['dims']}-d" if "preprocess" in summary else ""
    table.add_row("features", f"{feats}{extra}")
    table.add_row("time", f"{summary['seconds']:.1f} s")
    Console(stderr=True).print(table)


def _model_source(spec: str, weights: str | None, n: int, sampler: str | None, steps: int | None,
                  seed: int, dev: Any, materialize: bool):
    """A runner source drawing ``n`` images from a registered model (8-bit, as saved PNGs)."""
    from gencli import registry
    from gencli.metrics import runner

    family, _, checkpoint = spec.partition(":")
    if sampler is not None:
        common.check_choice(sampler, ("ddpm", "ddim"), "--sampler")
    registry.require_capability(family, "sample")
    net, meta = common.load_model(family, checkpoint or None, weights, dev)
    opts: dict[str, Any] = {}
    if sampler:
        opts["sampler"] = sampler
    spec_defaults = registry.get_family(family).sample_defaults
    opts.setdefault("sampler", spec_defaults.get("sampler"))
    if steps:
        opts["steps"] = steps
    elif "steps" in spec_defaults and opts.get("sampler") == spec_defaults.get("sampler"):
        opts["steps"] = spec_defaults["steps"]
    opts = {k: v for k, v in opts.items() if v is not None}

    def sample_fn(batch_index: int, count: int):
        gen = common.generator(dev, seed + batch_index)
        return net.sample(count, gen, **opts).float()

    label = f"{spec} ({n} samples)"
    if not materialize:
        return runner.samples_source(label, n, sample_fn)
    # `all` runs two feature networks over the same samples: draw them once, keep them as 8-bit
    import torch

    from gencli.io.datasets import TensorImageDataset

    chunks = []
    for b in range(math.ceil(n / runner.SAMPLE_BATCH)):
        x = sample_fn(b, min(runner.SAMPLE_BATCH, n - b * runner.SAMPLE_BATCH))
        chunks.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
    ds = TensorImageDataset(torch.cat(chunks), None, None, spec)
    return runner.Source("dataset", label, count=n, dataset=ds, cacheable=False)
