"""Shared pytest setup. Fixtures used by several CLI test modules live in cli_support.py."""

from __future__ import annotations

import signal

import pytest


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
