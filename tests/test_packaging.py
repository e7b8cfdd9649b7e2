"""The package list in pyproject.toml (kept by hand, see there) covers every package in the tree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package_and_the_bundled_weights():
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^packages = \[(.*?)\]", text, re.S | re.M)
    assert block, "pyproject.toml has no [tool.setuptools] packages list"
    listed = set(re.findall(r'"([\w.]+)"', block.group(1)))
    in_tree = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "gencli").rglob("__init__.py")}
    assert in_tree - listed == set(), "add these packages to pyproject.toml"
    assert listed - in_tree == {"gencli._bundled"}
    assert (ROOT / "weights" / "__init__.py").is_file()
    assert (ROOT / "weights" / "ddpm-fashion-mnist.safetensors").is_file()


def test_bundled_weights_stay_under_40_mb():
    """weights/ ships inside the package: its total stays under 40 MB (the issues' budget)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "weights"
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < 40e6, f"weights/ holds {total / 1e6:.1f} MB"
