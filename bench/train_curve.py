"""Quality over training: FD of every kept checkpoint of a diffusion run (issue 14's FD-vs-wall-time curves).

    gencli train ddpm --data fashion-mnist --out runs/v2 --steps 30000 --keep-every 1000 ...
    python bench/train_curve.py runs/v2 [-n 1000] [--steps 25] [--sampler ddim] [--features fmnist]

For each ``checkpoints/step-NNNNNNN.safetensors`` of the run (written by ``--keep-every``), runs the
documented command

    gencli evaluate fid fashion-mnist:test --model ddim --model-weights CKPT --steps 25 -n N --features fmnist --json

and prints one row per checkpoint: step, images seen (step x batch), epochs of the 60,000-image
train split, the run's wall time at that step (from log.jsonl: seconds since its first logged step,
so any time the run was stopped or paused counts) and the FD. Rows of several runs printed one after
the other make the curves to compare variants by FD after the same training time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def log_times(run: Path) -> dict[int, tuple[float, float]]:
    """step -> (wall seconds since the run's start, active seconds): the active time leaves out the
    gaps where the run was stopped (an interval between two log lines longer than twice the median
    interval counts as the median), so a run that was stopped and resumed gets a usable time axis."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    if not rows:
        return {}
    first = rows[0]["step"] / max(rows[0].get("it_s") or 1e-9, 1e-9)
    t0 = rows[0]["time"] - first
    gaps = [(b["time"] - a["time"]) / max(1, b["step"] - a["step"]) for a, b in zip(rows, rows[1:])]
    per_step = sorted(gaps)[len(gaps) // 2] if gaps else 0.0
    out, active = {int(rows[0]["step"]): (first, first)}, first
    for (a, b), gap in zip(zip(rows, rows[1:]), gaps):
        active += min(gap, 2 * per_step) * max(1, b["step"] - a["step"])
        out[int(b["step"])] = (b["time"] - t0, active)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--features", default="fmnist")
    ap.add_argument("--reference", default="fashion-mnist:test")
    ap.add_argument("--only", type=int, nargs="+", default=None, metavar="STEP",
                    help="evaluate only the kept checkpoints of these steps")
    args = ap.parse_args()
    print("| run | step | images | epochs | wall h | active h | FD |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        kept = sorted((run / "checkpoints").glob("step-*.safetensors"))
        if not kept:
            print(f"{run}: no checkpoints/step-*.safetensors (train with --keep-every N)", file=sys.stderr)
            continue
        from gencli.training_state import load_training_state

        state = load_training_state(run / "state.safetensors")
        batch = int((state.get("train_config") or {}).get("batch_size") or 128)
        del state
        times = log_times(run)
        for ckpt in kept:
            step = int(ckpt.stem.split("-")[1])
            if args.only and step not in args.only:
                continue
            cmd = ["gencli", "evaluate", "fid", args.reference, "--model", args.sampler, "--model-weights", str(ckpt),
                   "--steps", str(args.steps), "-n", str(args.n), "--features", args.features, "--json"]
            print("# " + " ".join(cmd), file=sys.stderr, flush=True)
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            fd = json.loads(out)
            value = fd.get("fid", fd.get("value")) if isinstance(fd, dict) else fd
            wall, active = times.get(step, (None, None))
            hours = "- | -" if wall is None else f"{wall / 3600:.2f} | {active / 3600:.2f}"
            print(f"| {run.name} | {step} | {step * batch} | {step * batch / 60000:.1f} | {hours} | {value:.2f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
