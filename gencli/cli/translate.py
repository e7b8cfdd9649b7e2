"""`gencli translate`: image-to-image translation (the families with the "translate" capability)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from gencli.cli import common, families
from gencli.errors import UsageError


def translate(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A model that can translate (see `gencli models`).")],
    args: Annotated[List[str], typer.Argument(
        metavar="[CHECKPOINT] INPUT... [FAMILY OPTIONS]",
        help="An optional named checkpoint first, then image files, folders, globs or - (stdin), and "
        "the family's own options (listed by `gencli translate MODEL --help`).")],
    weights: Annotated[Optional[str], typer.Option(
        "--weights", "-w", help="Any weights reference: a file, a folder, org/repo[@rev], hf://...")] = None,
    out: Annotated[Optional[str], typer.Option(
        "-o", "--out", help="DIR/ (one PNG per input, names mirrored), FILE.png (one image or a grid) or -.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for models that are stochastic at test time.")] = 0,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", "-b", help="Images per batch (consecutive images of the same size) [default: 16 on a "
        "GPU; on the CPU as many as make 256x256 pixels, e.g. 1 at 256x256, 16 at 64x64].")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="fp32, fp16 or bf16 (autocast).")] = "fp32",
    grid: Annotated[bool, typer.Option("--grid", help=common.GRID_HELP)] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")] = False,
    quiet_: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
) -> None:
    """Translate images with an image-to-image model; outputs mirror the input names."""
    from gencli import api, registry

    spec = registry.require_capability(model, "translate")
    args, opts = families.split_args(spec, "translate", args)
    checkpoint = None
    known = {ref.name for ref in spec.checkpoints}
    if args and args[0] in known and not os.path.exists(args[0]):
        checkpoint, args = args[0], args[1:]
    if not args:
        raise UsageError("no input images given: pass files, folders, globs or - (stdin)")
    if batch_size is not None:
        common.check_positive(batch_size, "--batch-size")
    common.check_positive(seed, "--seed", 0)
    common.check_choice(precision, common.PRECISIONS, "--precision")
    if args.count("-") > 1:
        raise UsageError("- (stdin) can be given only once")
    out = common.resolve_output(out)

    from gencli.io.images import list_images

    paths, names = [], []
    for arg in args:
        found = list_images([arg])
        paths += found
        for p in found:
            if p == "-":
                names.append("stdin.png")
            elif p.startswith("-:"):
                names.append(f"stdin-{int(p[2:]):06d}.png")
            elif os.path.isdir(arg):
                names.append(os.path.relpath(p, arg))
            else:
                names.append(Path(p).name)
    folder = common.streams(out, len(paths), grid)
    if folder and out != "-":
        stems = [str(Path(n).with_suffix("")) for n in names]
        dup = next((n for n in stems if stems.count(n) > 1), None)
        if dup is not None:
            raise UsageError(f"two inputs would both be written to {os.path.join(out, dup + '.png')}; "
                             f"translate them into separate folders")
    common.precheck_output(out, len(paths), force=force, names=names if folder else None)

    net = common.load_model(model, checkpoint, weights, device, precision)

    import torch

    from gencli.io.images import load_image
    from gencli.io.writers import write_images

    results, written = [], []
    t0 = time.perf_counter()
    with common.progress_bar(f"translate {model}", len(paths), enabled=common.show_progress(quiet_)) as bar:
        done = 0
        images = (load_image(path, channels=None) for path in paths)
        for ys in api.iter_translate(net, images, batch_size=batch_size, seed=seed, **opts):
            if folder:
                written += write_images(torch.stack(ys), out, force=force, names=names[done:done + len(ys)])
            else:
                results.extend(ys)
            done += len(ys)
            bar.advance(len(ys))
    if not folder:
        shapes = {tuple(r.shape) for r in results}
        if len(shapes) > 1:
            raise UsageError(f"the {len(results)} outputs differ in size and cannot share one grid: "
                             f"pass -o DIR/ or --size N")
        written = write_images(torch.stack(results), out, force=force, grid=True)
    common.info(f"wrote {common.describe_output(written, out, len(paths) if folder else 0)} "
                f"({common.plural(len(paths), 'image')}, {model}, "
                f"{time.perf_counter() - t0:.1f} s)", quiet_)
