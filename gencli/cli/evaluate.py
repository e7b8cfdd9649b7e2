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
Results: one ``name: value`` line per value on stdout (``fid: 12.34``) and a small table on stderr,
or (instead) one JSON object on stdout with ``--json``.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, List, Optional

import typer

from gencli.cli import common, families
from gencli.errors import UsageError
from gencli.metrics.evaluate import DEFAULT_SEED

#: the summary values printed on stdout, one ``name: value`` line each, in this order
RESULT_KEYS = ("fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall", "f_score", "bits_per_dim",
               "saved_stats")



def evaluate(
    metric: Annotated[str, typer.Argument(metavar="METRIC", help="fid, kid, is, pr, all, or nll (bits/dim of "
        "the images A under --model).")],
    inputs: Annotated[Optional[List[str]], typer.Argument(
        metavar="A [B] [FAMILY OPTIONS]", help="Real then generated: folders, globs, files, .npz statistics, "
        "or a dataset name (fashion-mnist, fashion-mnist:test, mnist); with --model, its family's sampling "
        "options (`gencli sample FAMILY --help`).", show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="Sample B on the fly from this model: NAME or NAME:CHECKPOINT.")] = None,
    model_weights: Annotated[Optional[str], typer.Option(
        "--model-weights", help="Weights reference of --model (file, folder, org/repo, hf://...).")] = None,
    num_samples: Annotated[int, typer.Option(
        "-n", "--num-samples", help="How many images --model draws.")] = 10000,
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
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", "-b", help="Images per batch (default: the extractor's; Inception 16 on the CPU, 50 on a GPU).")
    ] = None,
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
    from gencli.metrics.evaluate import evaluate as run

    sample_options: dict = {}
    if model:
        from gencli import registry

        # nll: the model's likelihood options; else: it samples B
        command = "log_likelihood" if metric == "nll" else "sample"
        spec = registry.require_capability(model.partition(":")[0], command)
        inputs, sample_options = families.split_args(spec, command, inputs or [])
    else:
        flag = next((a for a in inputs or [] if a.startswith("-") and a != "-"), None)
        if flag is not None:
            raise UsageError(f"No such option: {flag} (family sampling options need --model)")
    from gencli.training.distributed import env_world

    rank = env_world()[0]  # under torchrun the ranks share the work and rank 0 reports
    quiet_ = quiet_ or rank > 0
    if rank > 0:
        import warnings

        warnings.simplefilter("ignore")  # rank 0 says it once
    show = common.show_progress(quiet_)

    def progress(label: str, total: int | None):  # noqa: ANN202
        return common.progress_bar(label, total=total, enabled=show)

    summary = run(metric, list(inputs or []), model=model, model_weights=model_weights, num_samples=num_samples,
                  sample_options=sample_options, features=features, dims=dims, preprocess=preprocess,
                  weights=weights, save_stats=save_stats, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                  splits=splits, k=k, seed=seed, batch_size=batch_size, device=common.device_of(device),
                  skip_bad=skip_bad, no_cache=no_cache, force=force, progress=progress)
    if rank > 0:
        return
    if json_out:
        common.print_json(summary)
        return
    # the values on stdout (`gencli evaluate fid a/ b/ > fid.txt`), the human summary on stderr
    lines = [f"{key}: {summary[key]}" for key in RESULT_KEYS if summary.get(key) is not None]
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()
    if not common.quiet(quiet_):
        if metric == "nll":
            _print_nll(summary)
        else:
            _print_table(metric, summary, summary)


def _print_nll(s: dict[str, Any]) -> None:
    opts = "".join(f", {k}={v}" for k, v in s["options"].items())
    sys.stderr.write(f"{s['bits_per_dim']:.4f} bits/dim (+- {s['bits_per_dim_sem']:.4f}; "
                     f"{s['nats_per_image']:.2f} nats/image) on {s['input']} ({s['n']} images, {s['dims']} dims), "
                     f"{s['model']}{opts}, {s['seconds']:.1f} s\n")


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


