"""Images on stdin: one encoded image, or a stream of PNGs one after another (what `-o -` writes
for several images, and ffmpeg's image2pipe reads and writes), read once per run."""

from __future__ import annotations

import sys

from gencli.errors import InputError

#: ``-:K`` names image K of a stream of images on stdin (see :func:`list_images`).
STDIN_PREFIX = "-:"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_stdin_cache: list[bytes] | None = None


def split_png_stream(data: bytes) -> list[bytes]:
    """The images of ``data``: a stream of PNGs one after another (as ``-o -`` writes them, and
    ffmpeg's image2pipe) is split at each IEND chunk; anything else is one image."""
    if not data.startswith(_PNG_SIGNATURE):
        return [data]
    parts, pos = [], 0
    while pos < len(data):
        if not data.startswith(_PNG_SIGNATURE, pos):
            raise InputError(f"stdin: {len(data) - pos} bytes after PNG image {len(parts)} are not another PNG")
        p = pos + len(_PNG_SIGNATURE)
        while True:
            if p + 12 > len(data):
                raise InputError(f"stdin: PNG image {len(parts) + 1} is truncated")
            length, kind = int.from_bytes(data[p:p + 4], "big"), data[p + 4:p + 8]
            p += 12 + length
            if kind == b"IEND":
                break
        if p > len(data):
            raise InputError(f"stdin: PNG image {len(parts) + 1} is truncated")
        parts.append(data[pos:p])
        pos = p
    return parts


def stdin_images() -> list[bytes]:
    """The encoded images on stdin, read once (a single image, or a stream of PNGs)."""
    global _stdin_cache
    if _stdin_cache is None:
        _stdin_cache = split_png_stream(sys.stdin.buffer.read())
    return _stdin_cache


def reset_stdin() -> None:
    """Forget what was read from stdin (each CLI run starts afresh)."""
    global _stdin_cache
    _stdin_cache = None
