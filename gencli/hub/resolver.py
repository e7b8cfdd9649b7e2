"""resolve(): a weights reference to a local file or folder (local path, bundled file, HF cache,
then a huggingface_hub download)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from gencli.errors import UsageError, WeightsNotFound
from gencli.hub.checksums import normalize_sha256, verify
from gencli.hub.env import endpoint_reachable, hf_endpoint, hf_progress, offline_var, stderr_is_tty
from gencli.hub.failures import LookupContext
from gencli.hub.refs import HubRef, is_folder_path, looks_like_local_path, parse_hub_ref
from gencli.paths import bundled_weights_dir

#: Files fetched when a whole repo (or folder) is requested.
DEFAULT_SNAPSHOT_PATTERNS: tuple[str, ...] = ("*.json", "*.safetensors", "*.md")


def resolve(
    ref: str,
    *,
    filename: str | None = None,
    revision: str | None = None,
    sha256: str | None = None,
    allow_download: bool = True,
    refresh: bool = False,
    patterns: Sequence[str] | None = None,
    progress: bool | None = None,
) -> Path:
    """Return a local file or folder for the weights reference ``ref``.

    Args:
        ref: a local path, a bundled file name, ``org/repo[@rev]`` or ``hf://org/repo/path[@rev]``.
        filename: file inside a Hub repo (or inside a local folder ``ref``).
        revision: branch, tag or commit for a Hub reference (must agree with an ``@rev`` in ref).
        sha256: expected checksum of the resolved file; a mismatch raises :class:`InputError`
            (a corrupted file in the HF/gencli cache is deleted; a user's own file never is).
        allow_download: if False, only local files, bundled weights and the HF cache are used.
        refresh: ask the Hub for the newest commit of a branch even if a cached copy exists.
        patterns: files to fetch for a snapshot (default :data:`DEFAULT_SNAPSHOT_PATTERNS`).
        progress: show download progress on stderr (default: only when stderr is a terminal).

    Raises:
        WeightsNotFound: nothing could be found; the one-line message says which reference,
            where we looked, and what to do.
        InputError: checksum mismatch.
        UsageError: conflicting arguments (two different revisions, two different files).
    """
    if not isinstance(ref, str) or not ref.strip():
        raise UsageError("empty weights reference; pass a file, a folder, org/repo or hf://org/repo/file")
    ref = ref.strip()
    expected = normalize_sha256(sha256) if sha256 else None

    if not ref.startswith("hf://"):
        # 1. a local file or folder
        local = Path(ref).expanduser()
        if local.exists():
            target = _local_target(local, filename, ref)
            return verify(target, expected, ref, ours=False) if expected else target
        # 2. a bundled file
        if "/" not in ref and "\\" not in ref:
            bundled = bundled_weights_dir() / ref
            if bundled.is_file():
                return verify(bundled, expected, ref, ours=False) if expected else bundled

    hub = None if looks_like_local_path(ref) else parse_hub_ref(ref)
    if hub is None:
        local = Path(ref).expanduser().absolute()
        hint = " (named checkpoints such as family:name are resolved by the registry)" if ":" in ref else ""
        raise WeightsNotFound(
            f"cannot resolve weights {ref!r}{hint}: no such file or folder ({local}), no bundled file of that "
            f"name in {bundled_weights_dir()}, and not a Hub reference (org/repo[@rev] or hf://org/repo/file); "
            "pass --weights PATH to an existing file"
        )
    # 3. the Hugging Face Hub (cache first)
    show = stderr_is_tty() if progress is None else progress
    with hf_progress(show):
        target = _resolve_hub(
            ref,
            hub,
            filename=filename,
            revision=revision,
            allow_download=allow_download,
            refresh=refresh,
            patterns=tuple(patterns) if patterns else DEFAULT_SNAPSHOT_PATTERNS,
        )
    return verify(target, expected, ref, ours=True) if expected else target


def _local_target(local: Path, filename: str | None, ref: str) -> Path:
    if filename is None or local.is_file():
        if filename is not None and local.name != Path(filename).name:
            raise UsageError(f"{ref!r} is a file, so filename={filename!r} cannot be looked up inside it")
        return local
    inner = local / filename
    if not inner.exists():
        raise WeightsNotFound(
            f"cannot resolve weights {ref!r}: the folder {local} has no {filename}; pass --weights PATH"
        )
    return inner


def _merge(name: str, from_ref: str | None, given: str | None, ref: str) -> str | None:
    if from_ref and given and from_ref != given:
        raise UsageError(f"conflicting {name}s for {ref!r}: {from_ref!r} in the reference and {given!r} given")
    return from_ref or given


def _resolve_hub(
    ref: str,
    hub: HubRef,
    *,
    filename: str | None,
    revision: str | None,
    allow_download: bool,
    refresh: bool,
    patterns: tuple[str, ...],
) -> Path:
    rev = _merge("revision", hub.revision, revision, ref)
    folder: str | None = None
    file: str | None = None
    if hub.path is not None and is_folder_path(hub.path):
        folder = hub.path.rstrip("/")
        file = f"{folder}/{filename.lstrip('/')}" if filename else None
    else:
        file = _merge("file", hub.path, filename, ref)
    offline = offline_var()
    if offline is None and not allow_download:
        offline = "allow_download=False"
    ctx = LookupContext(ref=ref, hub=hub, revision=rev, file=file, folder=folder, offline=offline)

    if file is not None:
        if not refresh:
            cached = _cached_file(hub, file, rev)
            if cached is not None:
                return cached
        if offline:
            raise ctx.not_found(ctx.offline_reason())
        _require_reachable(ctx)
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(hub.repo_id, file, revision=rev, repo_type=hub.repo_type))
        except Exception as e:
            raise ctx.translate(e) from e

    allow = [f"{folder}/{p}" for p in patterns] if folder else list(patterns)
    if not refresh:
        cached_dir = _cached_snapshot(hub, rev, allow, trust_partial=bool(offline))
        if cached_dir is not None and (folder is None or (cached_dir / folder).is_dir()):
            return ctx.subfolder(cached_dir)
    if offline:
        raise ctx.not_found(ctx.offline_reason())
    _require_reachable(ctx)
    from huggingface_hub import snapshot_download

    try:
        snap = Path(snapshot_download(hub.repo_id, revision=rev, repo_type=hub.repo_type, allow_patterns=allow))
    except Exception as e:
        raise ctx.translate(e) from e
    return ctx.subfolder(snap)


def _cached_file(hub: HubRef, file: str, rev: str | None) -> Path | None:
    """The cached copy of a Hub file, found without any request (None if not cached)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(hub.repo_id, file, revision=rev, repo_type=hub.repo_type)
    except (ValueError, OSError):
        return None
    return Path(found) if isinstance(found, str) and os.path.isfile(found) else None


def _cached_snapshot(hub: HubRef, rev: str | None, allow: list[str], *, trust_partial: bool) -> Path | None:
    """A cached snapshot folder, found without any request (None if absent or possibly partial).

    A snapshot folder also exists after single-file downloads, so online we only trust it when
    huggingface_hub cached the repo's file listing (written by a complete ``snapshot_download``,
    which lets it check completeness).  Offline, a possibly partial folder beats nothing.
    """
    import huggingface_hub

    try:
        folder = huggingface_hub.snapshot_download(
            hub.repo_id, revision=rev, repo_type=hub.repo_type, allow_patterns=allow, local_files_only=True
        )
    except Exception:  # not cached, incomplete, invalid id...
        return None
    get_tree = getattr(huggingface_hub, "get_cached_repo_tree", None)
    if not trust_partial and get_tree is not None:
        try:
            get_tree(hub.repo_id, revision=rev, repo_type=hub.repo_type)
        except Exception:
            return None
    return Path(folder)


def _require_reachable(ctx: LookupContext) -> None:
    """One quick line instead of huggingface_hub's retries when the endpoint cannot be reached."""
    endpoint = hf_endpoint()
    if not endpoint_reachable(endpoint):
        raise ctx.not_found(f"{endpoint} could not be reached and it is not in the HF cache",
                            "check your connection (and HF_ENDPOINT), pass --weights PATH, or set HF_HUB_OFFLINE=1 "
                            "to use only cached files")
