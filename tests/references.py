"""The reference implementations the comparison tests need, and what happens when one is missing.

diffusers and scipy come with the ``[bench]`` extra; pytorch-fid, torch-fidelity and their
torchvision with ``make anchors`` (``.anchors/``, or ``$GENCLI_ANCHORS``). A test that compares
against one of them calls :func:`require` (or :func:`anchors`) instead of ``pytest.importorskip``:

* normally a missing reference SKIPS the test, with a reason starting ``reference missing:``, and
  the run ends with one summary line counting them (``conftest.py``);
* under CI (``CI=true``, as GitHub Actions and most runners set it) or with
  ``GENCLI_REQUIRE_ANCHORS=1``, a missing reference is an ERROR: a comparison that silently stops
  running is how a "matches diffusers" claim stops being true without anyone noticing.
"""

from __future__ import annotations

import importlib
import os

import pytest

PREFIX = "reference missing:"
HINT = "`make install` installs diffusers/scipy and the anchors (.anchors/ or $GENCLI_ANCHORS)"


def strict() -> bool:
    """True under CI or with GENCLI_REQUIRE_ANCHORS=1: a missing reference fails the run."""
    ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
    return ci or os.environ.get("GENCLI_REQUIRE_ANCHORS", "").strip() in ("1", "true", "yes")


def missing(what: str, error: BaseException | str, *, module_level: bool = False):
    """Skip (dev run) or fail (CI / GENCLI_REQUIRE_ANCHORS=1) because reference ``what`` is absent."""
    msg = f"{PREFIX} {what} ({error}); {HINT}"
    if strict():
        pytest.fail(f"{msg} [required: CI or GENCLI_REQUIRE_ANCHORS=1 is set]", pytrace=False)
    pytest.skip(msg, allow_module_level=module_level)


def require(module: str, *, module_level: bool = False):
    """``importlib.import_module(module)``, or :func:`missing` when it cannot be imported."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing(module, e, module_level=module_level)


def anchors(*, module_level: bool = False):
    """``(pytorch_fid.fid_score, torch_fidelity)`` via gencli.metrics.testing.import_anchors."""
    from gencli.metrics.testing import import_anchors

    try:
        return import_anchors()
    except ImportError as e:
        missing("pytorch-fid/torch-fidelity", e, module_level=module_level)
