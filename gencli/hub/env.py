"""What the environment says about downloads: offline switches, the huggingface_hub cache and
endpoint, and whether progress is shown (stderr a terminal; huggingface_hub's own bars)."""

from __future__ import annotations

import functools

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator

_TRUE = {"1", "ON", "YES", "TRUE"}


def offline_var() -> str | None:
    """Name of the setting that turns downloads off, or None when online."""
    if os.environ.get("GENCLI_OFFLINE", "").upper() in _TRUE:
        return "GENCLI_OFFLINE"
    # huggingface_hub reads HF_HUB_OFFLINE at import time; also honour a change made since then.
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE:
        return "HF_HUB_OFFLINE"
    from huggingface_hub import constants

    if getattr(constants, "HF_HUB_OFFLINE", False):
        return "HF_HUB_OFFLINE"
    return None


def is_offline() -> bool:
    """True when ``GENCLI_OFFLINE`` or ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set."""
    return offline_var() is not None


def hf_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def hf_endpoint() -> str:
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def hf_progress(enabled: bool) -> Iterator[None]:
    """Silence huggingface_hub's tqdm bars for the block unless ``enabled``."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    if enabled or are_progress_bars_disabled():
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        disable_progress_bars()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enable_progress_bars()


#: seconds to wait for the Hub's TCP port before declaring it unreachable
PROBE_TIMEOUT = 2.0


@functools.lru_cache(maxsize=8)
def endpoint_reachable(endpoint: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to ``endpoint`` (a URL) opens within ``timeout`` seconds.

    Asked once per process before huggingface_hub is: without a network its HTTP layer retries
    for ~20 s and logs every retry, where one line and a quick answer are what a user needs.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    host = parts.hostname
    if not host:
        return True  # not a URL we understand: let huggingface_hub decide
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
