"""Shared pytest setup. Fixtures used by several CLI test modules live in cli_support.py."""

from __future__ import annotations

import signal

import pytest
from references import PREFIX, strict


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One intra-op thread for the whole suite: on a 2-core machine shared with other work, two
    OpenMP threads stall each other badly, and the tests' models are too small to gain from two."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def interactive_signals():
    """Python's handlers as in an interactive shell: a background job (CI runners, `cmd &`) starts
    with SIGINT ignored, and the trainer rightly leaves an ignored signal ignored."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line saying how many tests skipped because a reference (diffusers, scipy, pytorch-fid,
    torch-fidelity) is missing; under CI / GENCLI_REQUIRE_ANCHORS=1 those are errors instead."""
    missing: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if PREFIX in reason:
            what = reason.split(PREFIX, 1)[1].split("(", 1)[0].strip()
            missing[what] = missing.get(what, 0) + 1
    if missing:
        detail = ", ".join(f"{what}: {n}" for what, n in sorted(missing.items()))
        terminalreporter.write_line(
            f"REFERENCES MISSING: {sum(missing.values())} comparison tests/modules skipped ({detail}); "
            "these claims were NOT checked. `make install` installs them; CI=true or "
            "GENCLI_REQUIRE_ANCHORS=1 makes this an error.", yellow=True, bold=True)
    elif strict():
        errors = sum(PREFIX in str(r.longrepr) for key in ("error", "failed")
                     for r in terminalreporter.stats.get(key, []))
        terminalreporter.write_line(
            f"references required (CI / GENCLI_REQUIRE_ANCHORS=1): {errors} missing (errors above)" if errors
            else "references required (CI / GENCLI_REQUIRE_ANCHORS=1): none missing", red=bool(errors))
