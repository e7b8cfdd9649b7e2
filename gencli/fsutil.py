"""Atomic file writes, shared by checkpoints, image writers and downloads.

A file is written to a temporary name in its destination folder, fsynced, given the mode a
normal ``open()`` would (0666 minus the umask, not mkstemp's 0600), and renamed over the target,
so a crash or Ctrl-C never leaves a partial or broken file, and an existing file stays intact
when anything fails.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable

from gencli.errors import GencliError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_path(path: Path, suffix: str = ".tmp") -> Path:
    """A unique temporary name next to ``path`` (hidden, so folder scans skip it)."""
    return path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{suffix}"


def finish(tmp: Path, path: Path) -> None:
    """fsync ``tmp``, give it the default file mode, rename it to ``path`` and fsync the folder."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """fsync a directory so a rename inside it survives a power cut (no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Create ``path`` atomically: ``write(tmp)`` fills a temporary file next to it, then rename.

    ``OSError`` (disk full, permission denied...) becomes a one-line :class:`GencliError`; the
    temporary file is removed on any failure and an existing ``path`` is left untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GencliError(f"cannot write {path}: {e.strerror or e}") from e
    tmp = temp_path(path)
    try:
        write(tmp)
        finish(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise GencliError(f"cannot write {path}: {e.strerror or e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))
