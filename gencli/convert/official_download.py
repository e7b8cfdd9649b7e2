"""The official download site of the pretrained CycleGAN/pix2pix generators, converted once into
the cache.

The pretrained files are fetched from the official download site by :func:`resolve_official`
(called by the registry for ``url:`` checkpoints in the ``cyclegan-pth``/``pix2pix-pth``
formats), converted once into ``cache_dir()/converted/<family>/<name>.safetensors``, and the
downloaded ``.pth`` is then removed.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from gencli.convert.official_cyclegan import FORMATS, official_to_gencli
from gencli.errors import InputError, WeightsNotFound

__all__ = ["MIRROR_ENV", "official_url", "converted_path", "resolve_official"]


def converted_path(family: str, name: str) -> Path:
    from gencli.paths import cache_dir

    return cache_dir() / "converted" / family / f"{name}.safetensors"


#: Environment variable naming a mirror of the official download site (same paths below it).
MIRROR_ENV = "GENCLI_CYCLEGAN_MIRROR"


def official_url(url: str) -> str:
    """``url`` on the mirror named by ``$GENCLI_CYCLEGAN_MIRROR`` when set (keeps the path)."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    from urllib.parse import urlsplit

    return mirror.rstrip("/") + urlsplit(url).path


def resolve_official(family: str, ref: Any, *, allow_download: bool = True) -> Path:
    """Local gencli checkpoint for a registry ``CheckpointRef`` whose source is an official ``.pth`` URL.

    A file converted earlier is returned at once (no request). Otherwise the ``.pth`` is
    downloaded into the cache (sha256-verified when the registry pins one), converted into
    ``cache_dir()/converted/<family>/<name>.safetensors``, and removed; a note says so.
    """
    from gencli.checkpoints import read_metadata, save_checkpoint
    from gencli.hub.urls import download_url
    from gencli.paths import download_path

    family = FORMATS.get(ref.format, family)
    dest = converted_path(family, ref.name)
    url = official_url(ref.source.partition(":")[2])
    if dest.is_file():
        try:
            if read_metadata(dest).get("family") == family:
                return dest
        except InputError:
            pass  # damaged: convert again
    if not allow_download:
        raise WeightsNotFound(f"{family} {ref.name} is not in the cache ({dest}) and downloads are off; "
                              f"run once online, or download {url} yourself and "
                              f"`gencli convert {family} FILE.pth -o {dest}`")
    download = download_path(family, url)
    placed = download.is_file()  # put there by the user (gencli removes its own downloads)
    pth = download_url(url, download, sha256=ref.sha256, desc=f"{family} {ref.name}")
    try:
        _, tensors, meta = official_to_gencli(
            pth, family, name=ref.name,
            extra_metadata={"source": url, "description": ref.description, "dataset": ref.dataset or ref.name})
    except InputError as e:
        if placed:
            raise InputError(f"{pth} (placed in gencli's cache, not downloaded by it) is not a usable {family} "
                             f"generator ({e}); it was left there: replace it with {url}") from None
        pth.unlink(missing_ok=True)
        raise InputError(f"the file downloaded from {url} is not a usable {family} generator ({e}); "
                         "it was removed from the cache") from None
    save_checkpoint(dest, tensors, meta, force=True)
    pin = "" if ref.sha256 else f" (not pinned yet: sha256 {meta['source_sha256'][0]})"
    if placed:
        warnings.warn(f"converted {pth}{pin} once into {dest} (the .pth is left where you put it)", stacklevel=2)
    else:
        pth.unlink(missing_ok=True)
        warnings.warn(f"downloaded {url}{pin} and converted it once into {dest}", stacklevel=2)
    return dest
