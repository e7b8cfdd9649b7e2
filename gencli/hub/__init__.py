"""Resolve a weights reference to a local file or folder; download non-Hub files.

A *weights reference* (``--weights REF``, or a registry entry's source) is one of:

1. a local file or folder that exists (``~`` is expanded);
2. a bare file name found in the bundled weights folder (:func:`gencli.paths.bundled_weights_dir`);
3. a Hugging Face Hub reference:

   - ``org/repo`` or ``org/repo@rev``: with ``filename=`` that file, else a snapshot of the
     repo's ``*.json``, ``*.safetensors`` and ``*.md`` files (a folder);
   - ``hf://org/repo/path/in/repo[@rev]`` or ``hf://org/repo@rev/path/in/repo``: a file; a path
     ending in ``/`` (or whose last part has no extension, e.g. ``unet``) is a folder, fetched
     as a snapshot restricted to that folder; ``hf://datasets/org/repo/...`` for dataset repos.

Hub downloads go through huggingface_hub, so its cache (``HF_HOME``/``HF_HUB_CACHE``),
``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE`` work as users expect.  The local HF cache is
always tried first, without any request, so a reference that was downloaded once keeps working
offline (``refresh=True`` asks the Hub again for the newest commit of a branch).

Named checkpoints such as ``ddpm:fashion-mnist`` are *not* handled here: the registry maps them
to a concrete source and calls :func:`resolve`.

Non-Hub files (official CycleGAN ``.pth`` generators, dataset mirrors) are fetched with
:func:`download_url` into gencli's own cache.

Modules: :mod:`~gencli.hub.refs` (parsing references), :mod:`~gencli.hub.resolver`
(:func:`resolve`), :mod:`~gencli.hub.failures` (its one-line messages), :mod:`~gencli.hub.urls`
(:func:`download_url`), :mod:`~gencli.hub.checksums` (sha256), :mod:`~gencli.hub.env` (offline
switches, HF cache and endpoint, progress).  This package re-exports the public names, so
``gencli.hub.resolve(...)`` keeps working.
"""

from gencli.hub.checksums import sha256_file
from gencli.hub.env import is_offline
from gencli.hub.refs import HubRef, parse_hub_ref
from gencli.hub.resolver import DEFAULT_SNAPSHOT_PATTERNS, resolve
from gencli.hub.urls import download_url

__all__ = [
    "DEFAULT_SNAPSHOT_PATTERNS",
    "HubRef",
    "parse_hub_ref",
    "is_offline",
    "resolve",
    "download_url",
    "sha256_file",
]
