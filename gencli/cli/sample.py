"""`gencli sample`: draw images from a generative model."""

from __future__ import annotations

import os
import time
from typing import List, Optional

import typer
from typing import Annotated

from gencli.cli import common, families
from gencli.errors import InputError, UsageError

from gencli.models.spec import MAX_BATCH

#: the most values (pixels x channels) one grid image may hold (PIL's decompression-bomb limit)
MAX_GRID_VALUES = 89_478_485


def sample(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A model that can sample (see `gencli models`).")],
    rest: Annotated[Optional[List[str]], typer.Argument(metavar="[CHECKPOINT] [FAMILY OPTIONS]",
        help="A named checkpoint of the family (default: the family's default), and the family's own "
        "options (listed by `gencli sample MODEL --help`).", show_default=False)] = None,
    weights: Annotated[Optional[str], typer.Option(
        "--weights", "-w", help="Any weights reference: a file, a run or diffusers folder, org/repo[@rev], hf://...")] = None,
    n: Annotated[Optional[int], typer.Option(
        "-n", "--num-images", help="How many images (default 16, or N of --init-noise).")] = None,
    classes: Annotated[Optional[List[str]], typer.Option(
        "--class", "-c", metavar="K", help="Class index or name (repeatable, or a comma list like 1,3,5); "
        "several classes are cycled over the images.")] = None,
    init_noise: Annotated[Optional[str], typer.Option(
        "--init-noise", help="A .safetensors file with key 'noise' (N, ...): start from these latents.")] = None,
    nrow: Annotated[Optional[int], typer.Option("--nrow", help="Images per row of a grid.")] = None,
    seed: Annotated[int, typer.Option(
        "--seed", help="Random seed; the same seed, batch size and device give the same images.")] = 0,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", "-b", help=f"Images per batch (default: all at once, up to {MAX_BATCH}).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="fp32, fp16 or bf16 (autocast).")] = "fp32",
    compile_: Annotated[bool, typer.Option(
        "--compile", help="torch.compile the model's network first (pays on long runs on a GPU; "
        "the first batch waits for the compiler).")] = False,
    out: Annotated[Optional[str], typer.Option(
        "-o", "--out", help="FILE.png (grid), DIR/ (numbered PNGs) or - (stdout: the PNG, or a stream of PNGs).")] = None,
    grid: Annotated[bool, typer.Option("--grid", help=common.GRID_HELP)] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")] = False,
    quiet_: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Sample images from a model.

    The same --seed and device reproduce the same images: for models with per-image noise (the
    diffusion models) image i depends on (seed, i) alone, whatever --batch-size or the number of
    torchrun ranks; for the others batch b draws from seed + b.
    """
    from gencli import registry

    spec = registry.require_capability(model, "sample")
    found, opts = families.split_args(spec, "sample", rest or [], positionals=1, what="checkpoint")
    checkpoint = found[0] if found else None
    if checkpoint and not weights:
        spec.checkpoint(checkpoint)  # unknown names fail before anything is loaded
    common.check_choice(precision, common.PRECISIONS, "--precision")
    common.check_positive(n, "-n")
    common.check_positive(nrow, "--nrow")
    common.check_positive(batch_size, "--batch-size")
    common.check_positive(seed, "--seed", 0)
    out = common.resolve_output(out, json_out=json_out)

    noise = _read_init_noise(init_noise) if init_noise else None
    if noise is not None:
        if n is not None and n != noise.shape[0]:
            raise UsageError(f"-n {n} disagrees with --init-noise, which holds {noise.shape[0]} images; drop -n")
        n = int(noise.shape[0])
    n = 16 if n is None else n
    common.precheck_output(out, n, force=force)
    from gencli.training import distributed

    rank, world, _ = distributed.env_world()  # under torchrun each rank writes its share of the images
    if world > 1:
        if not common.is_folder_target(out):
            raise UsageError("under torchrun each rank writes its share of the images: pass -o DIR/")
        device = str(distributed.device_for(common.device_of(device)))
        quiet_ = quiet_ or rank > 0
    share = distributed.share(n, rank, world)

    net = common.load_model(model, checkpoint, weights, device, precision)
    if compile_:
        net.compile_for_sampling()
    labels, grid_nrow = _class_labels(net, classes, n, nrow)
    bs = min(batch_size or min(n, MAX_BATCH), n)
    settings = net.sampling_settings(**opts)
    folder = common.streams(out, n, grid)  # folders and PNG streams: batch by batch (constant memory)
    side = net.image_size + 2
    if not folder and n * side * side * net.channels > MAX_GRID_VALUES:
        raise UsageError(f"a grid of {n} images of {net.image_size}x{net.image_size} is too large for one image: "
                         f"write a folder (-o DIR/) or a stream of PNGs (-o -)")

    from gencli.io.writers import write_images

    width = max(6, len(str(n - 1)))
    names = [f"{i:0{width}d}.png" for i in range(n)]
    images, written = [], []
    t0 = time.perf_counter()
    with common.progress_bar(f"sample {model}", enabled=common.show_progress(quiet_)) as bar:
        def progress(done: int, total: int) -> None:
            bar.set_total(total)
            bar.set_completed(done)

        for lo, hi, x in net.iter_generate(n, seed, batch_size=bs, class_labels=labels, init_noise=noise,
                                           progress=progress, indices=share, **opts):
            if x.dim() == 5:  # the model made a figure, (rows, columns, C, H, W): one row per row
                grid_nrow, x = x.shape[1], x.flatten(0, 1)
                names = [f"{i:0{width}d}.png" for i in range(len(names) + x.shape[0])]
                lo, hi = len(written), len(written) + x.shape[0]
            if folder:
                written += write_images(x.cpu(), out, force=force, names=names[lo:hi])
            else:
                images.append(x.cpu())
    if world > 1:
        distributed.Group(net.device).barrier()  # every rank's files are written
        written = [os.path.join(out, name) for name in names]
    seconds = time.perf_counter() - t0
    if not folder:
        import torch

        written = write_images(torch.cat(images), out, force=force, nrow=grid_nrow, grid=True)
    label = common.checkpoint_label(spec, checkpoint, weights)
    if json_out:
        common.print_json({"outputs": written, "model": model, "checkpoint": label,
                           "source": str(net.metadata.get("source", "")), "n": n, **settings,
                           "seed": seed, "batch_size": bs, "device": str(net.device),
                           "precision": precision, "seconds": round(seconds, 3)})
    common.info(f"wrote {common.describe_output(written, out, n if folder else 0)} ({common.plural(n, 'image')}, {model}"
                f"{common.describe_settings(settings)}, {seconds:.1f} s)", quiet_)


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


def _class_labels(net, classes: list[str] | None, n: int, nrow: int | None):
    """(labels for the n images or None, grid nrow) following the --class/--nrow rules; the model
    checks the labels (range, conditioning)."""
    names = net.metadata.get("class_names") if isinstance(net.metadata.get("class_names"), list) else None
    wanted = common.parse_int_list(classes, "--class", names)
    if not wanted:
        if net.num_classes and nrow is None and n >= net.num_classes:
            nrow = net.num_classes  # the classes in turn: one class per column
        return None, nrow
    if nrow is None and len(wanted) > 1 and n >= len(wanted):
        nrow = len(wanted)
    return net.class_labels(n, [wanted[i % len(wanted)] for i in range(n)], device="cpu"), nrow
