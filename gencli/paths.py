"""Where gencli keeps things on disk."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """gencli's own cache: converted checkpoints, datasets, statistics.

    ``$GENCLI_CACHE`` if set, else ``$XDG_CACHE_HOME/gencli``, else ``~/.cache/gencli``.
    Hugging Face downloads stay in huggingface_hub's own cache (``HF_HOME``), so a user's
    existing setup is shared.
    """
    env = os.environ.get("GENCLI_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "gencli"


def download_path(kind: str, filename: str) -> Path:
    """Where a plain (non-Hub) download for ``kind`` is kept: ``cache_dir()/downloads/KIND/NAME``.

    ``kind`` is the family or network the file belongs to (``cyclegan``, ``pix2pix``...);
    ``filename`` is the file's name, or its URL (whose last path component is used). Hub files
    are not kept here: they stay in huggingface_hub's cache.
    """
    name = Path(filename.split("?", 1)[0].split("#", 1)[0]).name if "://" in filename else Path(filename).name
    if not name or name in (".", ".."):
        raise ValueError(f"no file name in {filename!r}")
    return cache_dir() / "downloads" / kind / name


def bundled_weights_dir() -> Path:
    """The folder holding the bundled default checkpoints (repo `weights/`, installed as gencli._bundled).

    A source tree's own weights/ comes first, so a checkout (or a git worktree) run with
    PYTHONPATH uses its own bundled files even when another checkout is installed in editable mode."""
    tree = Path(__file__).resolve().parent.parent / "weights"
    if (tree / "__init__.py").is_file():
        return tree
    try:
        from importlib.resources import files

        return Path(str(files("gencli._bundled")))
    except (ModuleNotFoundError, TypeError):  # running from a source tree without install
        return Path(__file__).resolve().parent.parent / "weights"
