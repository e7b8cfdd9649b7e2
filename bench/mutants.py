"""Mutation check: each listed mutant (a small, plausible bug) must be caught by the default suite.

For every mutant this copies the repository (tracked and untracked files, not .git) to a
temporary folder, applies the mutant (an exact text replacement that must match once), and runs
the tests that should catch it, in two environments:

* ``refs``:    as installed (diffusers, scipy, the anchors when $GENCLI_ANCHORS/.anchors exist);
* ``no-refs``: diffusers and scipy hidden (an importable stub that raises ImportError) and
               GENCLI_ANCHORS pointing at an empty folder, i.e. a venv without the [bench] extra.

A mutant is caught when the tests fail in BOTH environments. Before that, the same tests must
pass on the unmutated copy in both environments (otherwise "caught" would mean nothing).
Prints a table and exits 1 if any mutant survives (or a baseline fails, or a patch no longer
applies: the code moved and the mutant needs updating).

    python bench/mutants.py              # all mutants
    python bench/mutants.py -k fsync     # those whose name contains "fsync"
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    what: str


MUTANTS = [
    Mutant(
        "cyclegan-folder-order", "gencli/convert/official_cyclegan.py",
        'pair = [path / "latest_net_G_A.pth", path / "latest_net_G_B.pth"]',
        'pair = [path / "latest_net_G_B.pth", path / "latest_net_G_A.pth"]',
        ("tests/models/translation/test_translation_networks.py::test_two_generators_make_one_two_way_checkpoint",),
        "an official CycleGAN folder read as (G_B, G_A)"),
    Mutant(
        "zero-padding-dropout-swapped", "gencli/convert/official_generators.py",
        'frozenset({0, 3}): ("zero", False), frozenset({0, 4}): ("zero", True)',
        'frozenset({0, 3}): ("zero", True), frozenset({0, 4}): ("zero", False)',
        ("tests/models/translation/test_translation_networks.py::test_official_padding_and_dropout_layouts_are_read_as_written",),
        "dropout flags of zero-padded official generators swapped"),
    Mutant(
        "frechet-noise-threshold", "gencli/metrics/stats.py",
        "    _, root, other = best\n    return _sum_sqrt(torch.linalg.eigvalsh(_sym(root.T @ other @ root)))",
        "    _, root, other = best\n    ev = torch.linalg.eigvalsh(_sym(root.T @ other @ root))\n"
        "    tol = t1.shape[0] * torch.finfo(ev.dtype).eps * float(ev.max())\n"
        "    return _sum_sqrt(torch.where(ev > tol, ev, torch.zeros_like(ev)))",
        ("tests/metrics/test_metrics_math.py::test_tiny_real_eigenvalues_of_the_reduced_problem_are_kept",),
        "a d*eps*max noise threshold on the reduced Frechet eigenproblem (the bug be26601 fixed)"),
    Mutant(
        "frechet-noise-threshold-r", "gencli/metrics/stats.py",
        "    _, root, other = best\n    return _sum_sqrt(torch.linalg.eigvalsh(_sym(root.T @ other @ root)))",
        "    _, root, other = best\n    return _sum_sqrt(_zero_noise(torch.linalg.eigvalsh(_sym(root.T @ other @ root))))",
        ("tests/metrics/test_metrics_math.py::test_tiny_real_eigenvalues_of_the_reduced_problem_are_kept",),
        "the same threshold at the reduced size r*eps*max"),
    Mutant(
        "no-fsync-before-rename", "gencli/fsutil.py",
        "    with open(tmp, \"rb+\") as f:\n        os.fsync(f.fileno())\n",
        "",
        ("tests/io/test_io_writers.py::test_atomic_writes_fsync_the_data_before_the_rename",),
        "the atomic writer renames without fsyncing the temporary file"),
    Mutant(
        "ddim-clipped-eps-wrong-abar", "gencli/models/diffusion/schedulers.py",
        "eps = (x - s.abar ** 0.5 * x0) / (1 - s.abar) ** 0.5",
        "eps = (x - s.abar_prev ** 0.5 * x0) / (1 - s.abar_prev) ** 0.5",
        ("tests/models/diffusion/test_schedulers.py::test_ddim_clipped_eps_follows_the_closed_form",),
        "guided DDIM (clipped_eps) re-derives eps with abar_prev instead of abar_t"),
    Mutant(
        "ddpm-fixed-large-is-small", "gencli/models/diffusion/schedulers.py",
        "        else:\n            var = beta\n",
        "        else:\n            var = (1 - s.abar_prev) / (1 - s.abar) * beta\n",
        ("tests/models/diffusion/test_schedulers.py::test_ddpm_steps_follow_the_closed_form",),
        "DDPM fixed_large uses the posterior (fixed_small) variance"),
    Mutant(
        "ddpm-fixed-large-abar", "gencli/models/diffusion/schedulers.py",
        "        else:\n            var = beta\n",
        "        else:\n            var = 1 - s.abar\n",
        ("tests/models/diffusion/test_schedulers.py::test_ddpm_steps_follow_the_closed_form",),
        "DDPM fixed_large uses 1 - abar_t instead of beta_t"),
]


def copy_repo(dest: Path) -> None:
    """Tracked + untracked (not ignored) files, as git sees the working tree."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, check=True, capture_output=True).stdout.split(b"\0")
    for rel in filter(None, files):
        src = ROOT / rel.decode()
        if not src.is_file():
            continue  # deleted in the working tree
        out = dest / rel.decode()
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, out)


def env_for(copy: Path, refs: bool, hide: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "GENCLI_REQUIRE_ANCHORS")}
    path = [str(copy)]
    if not refs:
        path.insert(0, str(hide))
        env["GENCLI_ANCHORS"] = str(hide / "no-anchors")
    env["PYTHONPATH"] = os.pathsep.join(path)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_tests(copy: Path, tests: tuple[str, ...], env: dict[str, str]) -> tuple[bool, str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                          cwd=copy, env=env, capture_output=True, text=True)
    tail = "\n".join(proc.stdout.strip().splitlines()[-3:])
    # rc 0: passed; 1: failed; anything else (no tests collected, usage error) is not a verdict
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"pytest exited {proc.returncode} on {tests}:\n{proc.stdout}\n{proc.stderr}")
    if proc.returncode == 0 and " skipped" in tail and " passed" not in tail:
        raise RuntimeError(f"{tests} were all skipped:\n{tail}")
    return proc.returncode == 0, tail


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", default="", help="only mutants whose name contains this")
    ap.add_argument("-v", action="store_true", help="print pytest's last lines for each run")
    args = ap.parse_args()
    mutants = [m for m in MUTANTS if args.k in m.name]
    rows, bad = [], 0
    with tempfile.TemporaryDirectory(prefix="gencli-mutants-") as tmp:
        tmp = Path(tmp)
        hide = tmp / "hide"
        for mod in ("diffusers", "scipy"):
            (hide / mod).mkdir(parents=True)
            (hide / mod / "__init__.py").write_text(f"raise ImportError('{mod} hidden by bench/mutants.py')\n")
        (hide / "no-anchors").mkdir()
        base = tmp / "base"
        copy_repo(base)
        probe = subprocess.run([sys.executable, "-c", "import gencli; print(gencli.__file__)"], cwd=base,
                               env=env_for(base, True, hide), capture_output=True, text=True, check=True)
        assert probe.stdout.strip().startswith(str(base)), f"gencli imported from {probe.stdout.strip()}"
        for m in mutants:
            t0 = time.perf_counter()
            verdicts = {}
            for refs in (True, False):
                ok, tail = run_tests(base, m.tests, env_for(base, refs, hide))
                verdicts[f"baseline-{'refs' if refs else 'no-refs'}"] = ok
                if args.v:
                    print(f"[{m.name} baseline refs={refs}] {tail}")
            mut = tmp / m.name
            shutil.copytree(base, mut)
            target = mut / m.file
            text = target.read_text()
            applies = text.count(m.old) == 1
            caught = {}
            if applies:
                target.write_text(text.replace(m.old, m.new))
                for refs in (True, False):
                    ok, tail = run_tests(mut, m.tests, env_for(mut, refs, hide))
                    caught["refs" if refs else "no-refs"] = not ok
                    if args.v:
                        print(f"[{m.name} mutant refs={refs}] {tail}")
            shutil.rmtree(mut)
            good = applies and all(verdicts.values()) and caught and all(caught.values())
            bad += not good
            rows.append((m.name, ", ".join(t.split("::")[-1] for t in m.tests),
                         "yes" if all(verdicts.values()) else "NO",
                         ("yes" if caught.get("refs") else "NO") if applies else "n/a",
                         ("yes" if caught.get("no-refs") else "NO") if applies else "n/a",
                         "" if applies else "patch does not apply", f"{time.perf_counter() - t0:.0f}s"))
            print(f"{m.name}: {'caught' if good else 'SURVIVES / broken'} ({m.what})", file=sys.stderr)
    head = ("mutant", "catching test", "baseline passes", "caught (refs)", "caught (no refs)", "note", "time")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"\n{len(rows) - bad}/{len(rows)} mutants caught in every environment")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
