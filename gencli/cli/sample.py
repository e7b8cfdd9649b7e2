"""`gencli sample`: draw images from a generative model."""

from __future__ import annotations

import math
import time
from typing import List, Optional

import typer
from typing import Annotated

from gencli.cli import common
from gencli.errors import InputError, UsageError

SAMPLERS = ("ddpm", "ddim")
SPACINGS = ("leading", "trailing", "linspace")
VARIANCES = ("fixed_small", "fixed_large")
MAX_BATCH = 64


def sample(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Model family (see `gencli models`), e.g. ddpm or ddim.")],
    checkpoint: Annotated[Optional[str], typer.Argument(metavar="CHECKPOINT",
        help="Named checkpoint of the family (default: the family's default).")] = None,
    weights: Annotated[Optional[str], typer.Option(
        "--weights", "-w", help="Any weights reference: a file, a run or diffusers folder, org/repo[@rev], hf://...")] = None,
    n: Annotated[Optional[int], typer.Option(
        "-n", "--num-images", help="How many images (default 16, or N of --init-noise).")] = None,
    steps: Annotated[Optional[int], typer.Option(
        "--steps", help="Sampling steps (default: the model's, ddim family 50).")] = None,
    sampler: Annotated[Optional[str], typer.Option("--sampler", help="ddpm or ddim.")] = None,
    eta: Annotated[Optional[float], typer.Option(
        "--eta", help="DDIM stochasticity (0 deterministic, 1 DDPM-like); ddim only.")] = None,
    spacing: Annotated[Optional[str], typer.Option(
        "--spacing", help="Timestep spacing: leading, trailing or linspace.")] = None,
    variance: Annotated[Optional[str], typer.Option(
        "--variance", help="DDPM posterior variance: fixed_small or fixed_large; ddpm only.")] = None,
    classes: Annotated[Optional[List[str]], typer.Option(
        "--class", "-c", help="Class index or name (repeatable, or a comma list like 1,3,5); "
        "several classes are cycled over the images.")] = None,
    guidance: Annotated[Optional[float], typer.Option(
        "--guidance", help="Classifier-free guidance weight (1 = plain conditional).")] = None,
    init_noise: Annotated[Optional[str], typer.Option(
        "--init-noise", help="A .safetensors file with key 'noise' shaped (N,C,H,W): start from it.")] = None,
    nrow: Annotated[Optional[int], typer.Option("--nrow", help="Images per row of a grid.")] = None,
    seed: Annotated[int, typer.Option(
        "--seed", help="Random seed; the same seed, batch size and device give the same images.")] = 0,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", "-b", help=f"Images per batch (default: all at once, up to {MAX_BATCH}).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="fp32, fp16 or bf16 (autocast).")] = "fp32",
    out: Annotated[Optional[str], typer.Option(
        "-o", "--out", help="FILE.png (grid), DIR/ (numbered PNGs) or - (PNG on stdout).")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")] = False,
    quiet_: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Sample images from a model.

    Batch b uses torch.Generator(device).manual_seed(seed + b): the same --seed, --batch-size and
    device reproduce the same images.
    """
    from gencli import registry

    spec = registry.require_capability(model, "sample")
    if checkpoint and not weights:
        spec.checkpoint(checkpoint)  # unknown names fail before anything is loaded
    defaults = dict(spec.sample_defaults)
    if sampler is not None:
        common.check_choice(sampler, SAMPLERS, "--sampler")
    if spacing is not None:
        common.check_choice(spacing, SPACINGS, "--spacing")
    if variance is not None:
        common.check_choice(variance, VARIANCES, "--variance")
    common.check_choice(precision, common.PRECISIONS, "--precision")
    common.check_positive(n, "-n")
    common.check_positive(steps, "--steps")
    common.check_positive(nrow, "--nrow")
    common.check_positive(batch_size, "--batch-size")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    if eta is not None and not 0.0 <= eta <= 1.0:
        raise UsageError(f"--eta must be between 0 and 1, got {eta}")
    out = common.resolve_output(out, json_out=json_out)

    import torch

    noise = _read_init_noise(init_noise) if init_noise else None
    if noise is not None:
        if n is not None and n != noise.shape[0]:
            raise UsageError(f"-n {n} disagrees with --init-noise, which holds {noise.shape[0]} images; drop -n")
        n = int(noise.shape[0])
    n = 16 if n is None else n
    common.precheck_output(out, n, force=force)

    dev = common.device_of(device)
    net, meta = common.load_model(model, checkpoint, weights, dev)
    sampling = dict(net.config.get("sampling", {}))
    eff_sampler = sampler or defaults.get("sampler") or sampling.get("sampler", "ddpm")
    if steps is None:
        if "steps" in defaults and eff_sampler == defaults.get("sampler", eff_sampler):
            steps = int(defaults["steps"])
        elif eff_sampler == sampling.get("sampler"):
            steps = int(sampling.get("steps", 1000))
        else:
            steps = 50
    if eta is not None and eff_sampler != "ddim":
        raise UsageError("--eta applies to DDIM sampling only: add --sampler ddim (or use the ddim model)")
    if variance is not None and eff_sampler != "ddpm":
        raise UsageError("--variance applies to DDPM sampling only: use --sampler ddpm")

    if noise is not None:
        expected = (net.channels, net.image_size, net.image_size)
        if tuple(noise.shape[1:]) != expected:
            raise InputError(f"{init_noise}: 'noise' has shape {tuple(noise.shape)}, this model needs "
                             f"(N, {', '.join(map(str, expected))})")

    labels, grid_nrow = _class_labels(net, meta, classes, n, nrow)
    bs = min(batch_size or min(n, MAX_BATCH), n)
    batches = math.ceil(n / bs)

    opts = dict(steps=steps, sampler=eff_sampler, spacing=spacing, guidance=guidance)
    if eff_sampler == "ddim":
        opts["eta"] = eta if eta is not None else defaults.get("eta")
    else:
        opts["variance_type"] = variance
    from gencli.io.writers import write_images

    folder = common.is_folder_target(out)  # folders are written batch by batch (constant memory)
    width = max(6, len(str(n - 1)))
    names = [f"{i:0{width}d}.png" for i in range(n)]
    images, written = [], []
    t0 = time.perf_counter()
    with common.progress_bar(f"{model} {eff_sampler}", enabled=common.show_progress(quiet_)) as bar:
        state = {"total": None}

        def progress(done: int, total: int) -> None:
            if state["total"] is None:
                state["total"] = total
                bar.set_total(total * batches)
            bar.advance(1)

        for b in range(batches):
            lo, hi = b * bs, min((b + 1) * bs, n)
            gen = common.generator(dev, seed + b)
            with common.autocast(dev, precision):
                x = net.sample(hi - lo, gen, class_labels=None if labels is None else labels[lo:hi],
                               init_noise=None if noise is None else noise[lo:hi], progress=progress, **opts)
            if folder:
                written += write_images(x.float().cpu(), out, force=force, names=names[lo:hi])
            else:
                images.append(x.float().cpu())
    seconds = time.perf_counter() - t0
    if not folder:
        written = write_images(torch.cat(images), out, force=force, nrow=grid_nrow)
    label = common.checkpoint_label(spec, checkpoint, weights)
    if json_out:
        common.print_json({"outputs": written, "model": model, "checkpoint": label,
                           "source": str(meta.get("source", "")), "n": n, "steps": steps,
                           "sampler": eff_sampler, "seed": seed, "batch_size": bs, "device": str(dev),
                           "precision": precision, "seconds": round(seconds, 3)})
    how = model if eff_sampler == model else f"{model}/{eff_sampler}"
    common.info(f"wrote {common.describe_output(written, out)} ({n} images, {how} {steps} steps, "
                f"{seconds:.1f} s)", quiet_)


def _read_init_noise(path: str):
    import os

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise InputError(f"--init-noise {path}: no such file")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise InputError(f"--init-noise {path}: not a readable safetensors file ({common.one_line(e)})") from None
    if "noise" not in tensors:
        keys = ", ".join(sorted(tensors)) or "none"
        raise InputError(f"--init-noise {path}: no tensor named 'noise' (found: {keys})")
    noise = tensors["noise"]
    if noise.dim() == 3:
        noise = noise[None]
    if noise.dim() != 4 or noise.shape[0] == 0:
        raise InputError(f"--init-noise {path}: 'noise' must be shaped (N, C, H, W), got {tuple(noise.shape)}")
    if not noise.is_floating_point():
        raise InputError(f"--init-noise {path}: 'noise' must be floating point, got {noise.dtype}")
    return noise.float()


def _class_labels(net, meta: dict, classes: list[str] | None, n: int, nrow: int | None):
    """(labels tensor or None, grid nrow) following the --class/--nrow rules."""
    import torch

    num_classes = net.num_classes
    names = meta.get("class_names") if isinstance(meta.get("class_names"), list) else None
    wanted = common.parse_int_list(classes, "--class", names)
    if not num_classes:
        if wanted:
            raise UsageError("this checkpoint is not class-conditional: drop --class")
        return None, nrow
    for k in wanted:
        if not 0 <= k < num_classes:
            raise UsageError(f"--class {k} is out of range: this model knows classes 0..{num_classes - 1}")
    if not wanted:
        labels = torch.arange(n) % num_classes
        if nrow is None and n >= num_classes:
            nrow = num_classes  # one class per column
        return labels, nrow
    labels = torch.tensor([wanted[i % len(wanted)] for i in range(n)])
    if nrow is None and len(wanted) > 1 and n >= len(wanted):
        nrow = len(wanted)
    return labels, nrow
