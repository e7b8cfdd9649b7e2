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
    rest: Annotated[Optional[List[str]], typer.Argument(metavar="[CHECKPOINT] [FAMILY OPTIONS]",
        help="A named checkpoint of the family (default: the family's default), and the family's own "
        "options (listed by `gencli interpolate MODEL --help`).", show_default=False)] = None,
    seeds: Annotated[str, typer.Option(
        "--seeds", help="Comma-separated seeds to pass through, e.g. 0,1 or 3,7,11.")] = "0,1",
    frames: Annotated[int, typer.Option("--frames", help="Number of frames.")] = 16,
    class_: Annotated[Optional[str], typer.Option(
        "--class", "-c", metavar="K", help="Class index or name for class-conditional models (default 0).")] = None,
    weights: Annotated[Optional[str], typer.Option(
        "--weights", "-w", help="Any weights reference: a file, a run or diffusers folder, org/repo, hf://...")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="fp32, fp16 or bf16 (autocast).")] = "fp32",
    out: Annotated[Optional[str], typer.Option(
        "-o", "--out", help="strip.png (one row), anim.gif (animation), DIR/ (numbered PNGs) or - (PNG on stdout).")] = None,
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
    found, opts = families.split_args(spec, "interpolate", rest or [], positionals=1, what="checkpoint")
    checkpoint = found[0] if found else None
    if checkpoint and not weights:
        spec.checkpoint(checkpoint)
    seed_list = common.parse_int_list(seeds, "--seeds")
    if len(seed_list) < 2:
        raise UsageError("--seeds needs at least two seeds, e.g. --seeds 0,1")
    if any(s < 0 for s in seed_list):
        raise UsageError("--seeds must be >= 0")
    common.check_positive(frames, "--frames", 2)
    common.check_positive(duration, "--duration")
    common.check_choice(precision, common.PRECISIONS, "--precision")
    out = common.resolve_output(out)
    gif = out != "-" and os.path.splitext(out)[1].lower() == ".gif"
    common.precheck_output(out, frames, force=force, animation=gif)

    net = common.load_model(model, checkpoint, weights, device, precision)
    label = None
    if class_ is not None or net.num_classes:
        names = net.metadata.get("class_names") if isinstance(net.metadata.get("class_names"), list) else None
        wanted = common.parse_int_list(class_, "--class", names) if class_ is not None else [0]
        if len(wanted) != 1:
            raise UsageError("--class takes one class for an interpolation")
        label = wanted[0]

    generators = [common.generator(net.device, s) for s in seed_list]
    t0 = time.perf_counter()
    with common.progress_bar(f"interpolate {model}", enabled=common.show_progress(quiet_)) as bar:
        def progress(done: int, total: int) -> None:
            bar.set_total(total)
            bar.set_completed(done)

        with common.autocast(net.device, precision):
            x = net.interpolate(frames, generators, class_labels=label, progress=progress, **opts)
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
        written = write_images(x, out, force=force, nrow=nrow or count)
    common.info(f"wrote {common.describe_output(written, out)} ({count} frames, seeds "
                f"{','.join(map(str, seed_list))}, {model}{common.describe_settings(opts)}, {seconds:.1f} s)",
                quiet_)
