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
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gencli import fsutil
from gencli.errors import GencliError, InputError, UsageError, WeightsNotFound
from gencli.paths import bundled_weights_dir, cache_dir

__all__ = [
    "DEFAULT_SNAPSHOT_PATTERNS",
    "HubRef",
    "parse_hub_ref",
    "is_offline",
    "resolve",
    "download_url",
    "sha256_file",
]

#: Files fetched when a whole repo (or folder) is requested.
DEFAULT_SNAPSHOT_PATTERNS: tuple[str, ...] = ("*.json", "*.safetensors", "*.md")

# A reference ending in one of these is a file name, never a Hub repo.
_FILE_SUFFIXES = {".safetensors", ".pth", ".pt", ".ckpt", ".bin", ".json", ".npz", ".onnx", ".h5", ".msgpack"}
_REPO_ID = re.compile(r"[A-Za-z0-9_][\w.-]{0,95}/[A-Za-z0-9_][\w.-]{0,95}")
_BARE_HUB_REF = re.compile(rf"(?P<repo>{_REPO_ID.pattern})(?:@(?P<rev>\S+))?")
_SPECIAL_REF = re.compile(r"refs/(?:convert/[\w.-]+|pr/\d+)")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
_TRUE = {"1", "ON", "YES", "TRUE"}


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubRef:
    """A parsed Hub reference: repo, optional revision, optional path (file, or folder ending '/')."""

    repo_id: str
    revision: str | None = None
    path: str | None = None
    repo_type: str = "model"

    def __str__(self) -> str:
        prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}.get(self.repo_type, "")
        rev = f"@{self.revision}" if self.revision else ""
        if self.path:
            return f"hf://{prefix}{self.repo_id}{rev}/{self.path}"
        return f"{'hf://' if prefix else ''}{prefix}{self.repo_id}{rev}"


def parse_hub_ref(ref: str) -> HubRef | None:
    """Parse ``org/repo[@rev]`` or ``hf://[datasets/]org/repo[@rev][/path][@rev]``; None if neither."""
    ref = ref.strip()
    if ref.startswith("hf://"):
        return _parse_hf_uri(ref[len("hf://") :])
    m = _BARE_HUB_REF.fullmatch(ref)
    if m is None:
        return None
    return HubRef(repo_id=m.group("repo"), revision=m.group("rev"))


def _parse_hf_uri(body: str) -> HubRef | None:
    repo_type = "model"
    for prefix, kind in (("datasets/", "dataset"), ("spaces/", "space")):
        if body.startswith(prefix):
            body, repo_type = body[len(prefix) :], kind
            break
    head, at, tail = body.partition("@")
    parts = head.split("/")
    revision: str | None = None
    if at:
        if not tail:
            return None
        if len(parts) == 2:  # hf://org/repo@rev[/path]
            special = _SPECIAL_REF.match(tail)
            if special:
                revision, rest = special.group(0), tail[special.end() :].lstrip("/")
            else:
                revision, _, rest = tail.partition("/")
            path = rest
        elif len(parts) > 2:  # hf://org/repo/path@rev
            revision, path = tail, "/".join(parts[2:])
        else:
            return None
    else:
        if len(parts) < 2:
            return None
        path = "/".join(parts[2:])
    repo_id = "/".join(parts[:2])
    if not _REPO_ID.fullmatch(repo_id) or not revision and at:
        return None
    path = path.lstrip("/")
    return HubRef(repo_id=repo_id, revision=revision or None, path=path or None, repo_type=repo_type)


def _looks_like_local_path(ref: str) -> bool:
    """True for references that can only mean a file on disk (so a miss is 'no such file')."""
    if ref.startswith("hf://"):
        return False
    if ref.startswith(("/", "./", "../", "~", ".\\", "..\\")) or "\\" in ref or re.match(r"[A-Za-z]:[\\/]", ref):
        return True
    base = ref.split("@", 1)[0]
    return base.count("/") >= 2 or Path(base).suffix.lower() in _FILE_SUFFIXES


def _is_folder_path(path: str) -> bool:
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return path.endswith("/") or "." not in last


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------


def _offline_var() -> str | None:
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
    return _offline_var() is not None


def _hf_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _endpoint() -> str:
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def _hf_progress(enabled: bool) -> Iterator[None]:
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


# --------------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, streamed in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _normalize_sha256(sha256: str) -> str:
    value = sha256.strip().lower()
    value = value.removeprefix("sha256:")
    if not _SHA256.fullmatch(value):
        raise UsageError(f"invalid sha256 {sha256!r}: expected 64 hexadecimal digits")
    return value


def _in_our_cache(path: Path) -> bool:
    roots = [Path(_hf_cache()), cache_dir()]
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


def _verify(path: Path, expected: str, ref: str, *, ours: bool) -> Path:
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


# --------------------------------------------------------------------------------------------
# resolve()
# --------------------------------------------------------------------------------------------


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
    expected = _normalize_sha256(sha256) if sha256 else None

    if not ref.startswith("hf://"):
        # 1. a local file or folder
        local = Path(ref).expanduser()
        if local.exists():
            target = _local_target(local, filename, ref)
            return _verify(target, expected, ref, ours=False) if expected else target
        # 2. a bundled file
        if "/" not in ref and "\\" not in ref:
            bundled = bundled_weights_dir() / ref
            if bundled.is_file():
                return _verify(bundled, expected, ref, ours=False) if expected else bundled

    hub = None if _looks_like_local_path(ref) else parse_hub_ref(ref)
    if hub is None:
        local = Path(ref).expanduser().absolute()
        hint = " (named checkpoints such as family:name are resolved by the registry)" if ":" in ref else ""
        raise WeightsNotFound(
            f"cannot resolve weights {ref!r}{hint}: no such file or folder ({local}), no bundled file of that "
            f"name in {bundled_weights_dir()}, and not a Hub reference (org/repo[@rev] or hf://org/repo/file); "
            "pass --weights PATH to an existing file"
        )
    # 3. the Hugging Face Hub (cache first)
    show = _stderr_is_tty() if progress is None else progress
    with _hf_progress(show):
        target = _resolve_hub(
            ref,
            hub,
            filename=filename,
            revision=revision,
            allow_download=allow_download,
            refresh=refresh,
            patterns=tuple(patterns) if patterns else DEFAULT_SNAPSHOT_PATTERNS,
        )
    return _verify(target, expected, ref, ours=True) if expected else target


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
    if hub.path is not None and _is_folder_path(hub.path):
        folder = hub.path.rstrip("/")
        file = f"{folder}/{filename.lstrip('/')}" if filename else None
    else:
        file = _merge("file", hub.path, filename, ref)
    offline = _offline_var()
    if offline is None and not allow_download:
        offline = "allow_download=False"
    ctx = _Context(ref=ref, hub=hub, revision=rev, file=file, folder=folder, offline=offline)

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


def _require_reachable(ctx: "_Context") -> None:
    from huggingface_hub import constants

    endpoint = constants.ENDPOINT
    if not endpoint_reachable(endpoint):
        raise ctx.not_found(f"{endpoint} could not be reached and it is not in the HF cache",
                            "check your connection (and HF_ENDPOINT), pass --weights PATH, or set HF_HUB_OFFLINE=1 "
                            "to use only cached files")


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


@dataclass
class _Context:
    """What was asked, to build one-line WeightsNotFound messages."""

    ref: str
    hub: HubRef
    revision: str | None
    file: str | None
    folder: str | None
    offline: str | None

    def _what(self) -> str:
        what = f"weights {self.ref!r}"
        if self.file and self.file != self.hub.path:
            what += f" (file {self.file})"
        return what

    def _where(self) -> str:
        return (
            f"looked for a local file, in {bundled_weights_dir()}, in the HF cache {_hf_cache()}"
            + ("" if self.offline else f" and on {_endpoint()}")
        )

    def not_found(self, reason: str, hint: str | None = None) -> WeightsNotFound:
        if hint is None:
            if self.offline == "allow_download=False":
                hint = "pass --weights PATH, or run `gencli pull NAME` to download it first"
            elif self.offline:
                hint = f"pass --weights PATH, run `gencli pull NAME` when online, or unset {self.offline}"
            else:
                hint = "pass --weights PATH, or check the reference"
        return WeightsNotFound(f"cannot resolve {self._what()}: {reason}; {self._where()}; {hint}")

    def offline_reason(self) -> str:
        if self.offline == "allow_download=False":
            return "not in the HF cache and downloads are not allowed here"
        return f"not in the HF cache and downloads are off ({self.offline or 'HF_HUB_OFFLINE'}=1)"

    def subfolder(self, snapshot: Path) -> Path:
        if self.folder is None:
            return snapshot
        sub = snapshot / self.folder
        if not sub.is_dir():
            raise self.not_found(f"{self.hub.repo_id} has no folder {self.folder}/ with files matching the patterns")
        return sub

    def translate(self, e: Exception) -> GencliError:
        """Map a huggingface_hub / network exception to a one-line WeightsNotFound."""
        from huggingface_hub import utils as hf

        repo = self.hub.repo_id
        rev = self.revision or "main"
        endpoint = _endpoint()
        if isinstance(e, GencliError):
            return e
        if isinstance(e, hf.RevisionNotFoundError):
            return self.not_found(
                f"revision {rev!r} not found in {repo} on {endpoint}", "check the revision, or pass --weights PATH"
            )
        if isinstance(e, hf.RepositoryNotFoundError):  # includes gated repos
            return self.not_found(
                f"repository {repo} not found on {endpoint} (or it is private/gated)",
                "check the name, set HF_TOKEN (or `hf auth login`) for a private or gated repo, or pass --weights PATH",
            )
        if isinstance(e, hf.LocalEntryNotFoundError):
            if self.offline:
                return self.not_found(self.offline_reason())
            return self.not_found(
                f"{endpoint} could not be reached and it is not in the HF cache",
                "check your connection (and HF_ENDPOINT), pass --weights PATH, "
                "or set HF_HUB_OFFLINE=1 to use only cached files",
            )
        if isinstance(e, hf.EntryNotFoundError):
            return self.not_found(
                f"{repo} has no file {self.file} at revision {rev!r}", "check the file name, or pass --weights PATH"
            )
        if isinstance(e, hf.OfflineModeIsEnabled):
            return self.not_found(self.offline_reason())
        if isinstance(e, hf.HFValidationError):
            return self.not_found(
                f"not a valid Hub reference ({_first_line(e)})", "use org/repo[@rev] or hf://org/repo/file"
            )
        if isinstance(e, hf.HfHubHTTPError):
            status = getattr(getattr(e, "response", None), "status_code", "?")
            return self.not_found(
                f"{endpoint} answered HTTP {status}", "try again later, pass --weights PATH, or set HF_HUB_OFFLINE=1"
            )
        if _is_network_error(e):
            return self.not_found(
                f"download from {endpoint} failed ({type(e).__name__}: {_first_line(e)})",
                "check your connection and try again, or pass --weights PATH",
            )
        raise e


def _is_network_error(e: BaseException) -> bool:
    import http.client

    if isinstance(e, (OSError, ConnectionError, TimeoutError, http.client.HTTPException)):
        return True
    root = type(e).__module__.split(".", 1)[0]
    return root in {"httpx", "httpx2", "httpcore", "requests", "urllib3"}


def _first_line(e: BaseException | str) -> str:
    text = str(e).strip() or (type(e).__name__ if isinstance(e, BaseException) else "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else text


# --------------------------------------------------------------------------------------------
# download_url()
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _progress_bar(desc: str, total: int | None, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield an ``advance(n)`` callback; a rich bar on stderr when enabled."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(desc, total=total)
        yield lambda n: bar.advance(task, n)


class _Truncated(Exception):
    pass


def download_url(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    desc: str | None = None,
    timeout: float = 30.0,
    progress: bool | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (meant for gencli's cache), verified and atomic.

    An existing ``dest`` is returned without any request when it matches ``sha256`` (or when no
    checksum is given); a mismatching one is downloaded again.  The data is streamed into a
    temporary file next to ``dest``, hashed on the way, checked against ``Content-Length`` and
    ``sha256``, fsynced and renamed into place; on any failure no partial file remains.
    Progress goes to stderr (rich) only when stderr is a terminal (or ``progress=True``).

    Raises:
        WeightsNotFound: offline (``GENCLI_OFFLINE``/``HF_HUB_OFFLINE``), HTTP error, network
            failure or truncated transfer.
        InputError: the downloaded data does not match ``sha256``.
        GencliError: ``dest`` cannot be written.
    """
    import http.client
    import urllib.error
    import urllib.request

    dest = Path(dest).expanduser()
    expected = _normalize_sha256(sha256) if sha256 else None
    if dest.is_file():
        try:
            if expected is None or sha256_file(dest) == expected:
                return dest
        except OSError:
            pass  # unreadable: download again
    offline = _offline_var()
    if offline:
        raise WeightsNotFound(
            f"cannot download {url}: downloads are off ({offline}=1); "
            f"unset {offline} and run again when online, or place the file at {dest}"
        )
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GencliError(f"cannot write {dest}: {e.strerror or e}") from e
    from gencli import __version__

    tmp = fsutil.temp_path(dest, ".part")
    show = _stderr_is_tty() if progress is None else progress
    h = hashlib.sha256()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": f"gencli/{__version__}"})
        with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as f:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            with _progress_bar(desc or dest.name, total, show) as advance:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    h.update(chunk)
                    received += len(chunk)
                    advance(len(chunk))
            if total is not None and received != total:
                raise _Truncated(f"got {received} of {total} bytes")
            f.flush()
            os.fsync(f.fileno())
        actual = h.hexdigest()
        if expected is not None and actual != expected:
            raise InputError(
                f"download of {url} does not match the expected sha256 {expected} (got {actual}); "
                "nothing was saved; the file may have changed upstream"
            )
        fsutil.finish(tmp, dest)
    except urllib.error.HTTPError as e:
        raise WeightsNotFound(
            f"cannot download {url}: HTTP {e.code} {e.reason}; check the URL, or place the file at {dest}"
        ) from e
    except (_Truncated, urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as e:
        reason = getattr(e, "reason", None) or e
        raise WeightsNotFound(
            f"cannot download {url}: {_first_line(str(reason)) or type(e).__name__}; "
            f"check your connection and try again, or place the file at {dest}"
        ) from e
    except OSError as e:
        raise GencliError(f"cannot write {dest}: {e.strerror or e}") from e
    finally:
        tmp.unlink(missing_ok=True)
    return dest


