"""sha256 checksums of weights files; a corrupted file in our caches is removed, a user's own
file never is."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

from gencli.errors import InputError, UsageError
from gencli.hub.env import hf_cache
from gencli.paths import cache_dir

_SHA256 = re.compile(r"[0-9a-f]{64}")
CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, streamed in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def normalize_sha256(sha256: str) -> str:
    value = sha256.strip().lower()
    value = value.removeprefix("sha256:")
    if not _SHA256.fullmatch(value):
        raise UsageError(f"invalid sha256 {sha256!r}: expected 64 hexadecimal digits")
    return value


def _in_our_cache(path: Path) -> bool:
    roots = [Path(hf_cache()), cache_dir()]
    candidates = {path.absolute(), path.resolve()}
    for root in roots:
        for r in {root.absolute(), root.resolve()}:
            if any(c.is_relative_to(r) for c in candidates):
                return True
    return False


def _remove_from_cache(path: Path) -> None:
    """Delete a corrupted cached file (and the HF blob its snapshot entry points to)."""
    if not _in_our_cache(path):
        return
    blob = path.resolve()
    with contextlib.suppress(OSError):
        path.unlink()
    if blob != path.absolute() and _in_our_cache(blob):
        with contextlib.suppress(OSError):
            blob.unlink()


def verify(path: Path, expected: str, ref: str, *, ours: bool) -> Path:
    """Check ``path`` against ``expected``; on mismatch remove it only if it is in our cache."""
    if path.is_dir():
        raise UsageError(f"a sha256 can only be checked for a file, but {ref!r} resolved to the folder {path}")
    try:
        actual = sha256_file(path)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from e
    if actual == expected:
        return path
    if ours:
        _remove_from_cache(path)
        what = "the corrupted download was removed from the cache; run the command again to re-download"
    else:
        what = "the file was left untouched; pass the right file or the right checksum"
    raise InputError(f"{path} ({ref}) does not match the expected sha256 {expected} (got {actual}); {what}")
