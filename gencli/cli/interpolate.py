"""`gencli interpolate`: a smooth path between the prior latents of several seeds, decoded by the model."""

from __future__ import annotations

import os
import time
from typing import Annotated, List, Optional

import typer

from gencli.cli import common, families
from gencli.errors import UsageError


def interpolate(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A model that can interpolate (see `gencli models`).")],
    rest: Annotated[Optional[List[str]], typer.Argument(metavar="[CHECKPOINT] [IMAGE...] [FAMILY OPTIONS]",
        help="A named checkpoint of the family (default: the family's default); images to pass through "
        "instead of --seeds (models that can encode); and the family's own options (listed by "
        "`gencli interpolate MODEL --help`).", show_default=False)] = None,
    seeds: Annotated[str, typer.Option(
        "--seeds", help="Comma-separated seeds to pass through, e.g. 0,1 or 3,7,11.")] = "0,1",
    frames: Annotated[int, typer.Option("--frames", help="Number of frames (with --traverse: per row).")] = 16,
    traverse: Annotated[bool, typer.Option(
        "--traverse", help="A latent-traversal grid instead: one row per latent dimension, swept around "
        "the code of IMAGE (or the prior's centre).")] = False,
    class_: Annotated[Optional[str], typer.Option(
        "--class", "-c", metavar="K", help="Class index or name for class-conditional models (default 0).")] = None,
    weights: Annotated[Optional[str], typer.Option(
        "--weights", "-w", help="Any weights reference: a file, a run or diffusers folder, org/repo, hf://...")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="fp32, fp16 or bf16 (autocast).")] = "fp32",
    out: Annotated[Optional[str], typer.Option(
        "-o", "--out", help="strip.png (one row), anim.gif (animation), DIR/ (numbered PNGs) or - (PNG on stdout).")] = None,
    grid: Annotated[bool, typer.Option("--grid", help=common.GRID_HELP)] = False,
    pingpong: Annotated[bool, typer.Option(
        "--pingpong", help="GIF: play forward then backward.")] = False,
    duration: Annotated[int, typer.Option("--duration", help="GIF: milliseconds per frame.")] = 80,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")] = False,
    quiet_: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
) -> None:
    """Interpolate between the prior latents of --seeds (slerp) and decode every frame with the model.

    Each end frame starts from the latent `gencli sample -n 1 --seed S` starts from.
    """
    from gencli import registry

    spec = registry.require_capability(model, "interpolate")
    if traverse:
        registry.require_capability(model, "traverse")
    found, opts = families.split_args(spec, "interpolate", rest or [], what="checkpoint")
    checkpoint = None
    if found and found[0] in {ref.name for ref in spec.checkpoints} and not os.path.exists(found[0]):
        checkpoint, found = found[0], found[1:]
    if checkpoint and not weights:
        spec.checkpoint(checkpoint)
    image_paths: list[str] = []
    if found:
        if not traverse:
            registry.require_capability(model, "encode")
        from gencli.io.images import list_images

        image_paths = list_images(found)
        if traverse and len(image_paths) != 1:
            raise UsageError(f"--traverse starts from one image, got {len(image_paths)}")
        if not traverse and len(image_paths) < 2:
            raise UsageError(f"an interpolation between images needs at least two, got {len(image_paths)}")
    seed_list = common.parse_int_list(seeds, "--seeds")
    if len(seed_list) < 2 and not (image_paths or traverse):
        raise UsageError("--seeds needs at least two seeds, e.g. --seeds 0,1")
    if any(s < 0 for s in seed_list):
        raise UsageError("--seeds must be >= 0")
    common.check_positive(frames, "--frames", 2)
    common.check_positive(duration, "--duration")
    common.check_choice(precision, common.PRECISIONS, "--precision")
    out = common.resolve_output(out)
    gif = out != "-" and os.path.splitext(out)[1].lower() == ".gif"
    if traverse and gif:
        raise UsageError("--traverse writes a grid: pass -o FILE.png, -o DIR/ or -o -")
    common.precheck_output(out, frames, force=force, animation=gif)

    net = common.load_model(model, checkpoint, weights, device, precision)
    label = None
    if class_ is not None or net.num_classes:
        names = net.metadata.get("class_names") if isinstance(net.metadata.get("class_names"), list) else None
        wanted = common.parse_int_list(class_, "--class", names) if class_ is not None else [0]
        if len(wanted) != 1:
            raise UsageError("--class takes one class for an interpolation")
        label = wanted[0]

    generators = [net.seed_generator(s) for s in seed_list]
    ends = None
    if image_paths:
        import torch

        from gencli.io.images import load_image

        x = [load_image(p, channels=net.channels) for p in image_paths]
        if len({tuple(t.shape) for t in x}) > 1 or tuple(x[0].shape[1:]) != (net.image_size, net.image_size):
            raise UsageError(f"{model} takes {net.image_size}x{net.image_size} images; "
                             f"{', '.join(image_paths)} do not all have that size")
        with torch.inference_mode():
            images = torch.stack(x).to(net.device)
            ends = None if traverse else list(net.encode(images))
    t0 = time.perf_counter()
    with common.progress_bar(f"interpolate {model}", enabled=common.show_progress(quiet_)) as bar:
        def progress(done: int, total: int) -> None:
            bar.set_total(total)
            bar.set_completed(done)

        with common.autocast(net.device, precision):
            if traverse:
                x = net.traverse(images if image_paths else None, frames=frames, class_labels=label,
                                 generators=generators, **opts)
            else:
                x = net.interpolate(frames, None if ends else generators, latents=ends, class_labels=label,
                                    progress=progress, **opts)
    x = x.float().cpu()
    nrow = None
    if x.dim() == 5:  # the model made a figure, (rows, columns, C, H, W), e.g. a traversal grid
        nrow, x = x.shape[1], x.flatten(0, 1)
    seconds = time.perf_counter() - t0

    from gencli.io.writers import write_animation, write_images

    count = x.shape[0]
    if gif:
        seq = list(x)
        if pingpong and count > 2:
            seq += seq[-2:0:-1]
        written = write_animation(seq, out, force=force, duration_ms=duration)
    else:
        written = write_images(x, out, force=force, nrow=nrow or (frames if traverse else count), grid=grid or out != "-")
    streamed = count if out == "-" and not grid and not gif else 0
    what = (f"{count // frames} rows" if traverse else
            f"images {', '.join(image_paths)}" if image_paths else f"seeds {','.join(map(str, seed_list))}")
    common.info(f"wrote {common.describe_output(written, out, streamed)} ({count} frames, {what}, "
                f"{model}{common.describe_settings(opts)}, {seconds:.1f} s)", quiet_)
