"""download_url(): plain (non-Hub) downloads into gencli's cache, streamed, sha256-checked and
atomic (official CycleGAN ``.pth`` generators, dataset mirrors)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from gencli import fsutil
from gencli.errors import GencliError, InputError, WeightsNotFound
from gencli.hub.checksums import CHUNK, normalize_sha256, sha256_file
from gencli.hub.env import offline_var, stderr_is_tty
from gencli.hub.failures import first_line


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
    expected = normalize_sha256(sha256) if sha256 else None
    if dest.is_file():
        try:
            if expected is None or sha256_file(dest) == expected:
                return dest
        except OSError:
            pass  # unreadable: download again
    offline = offline_var()
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
    show = stderr_is_tty() if progress is None else progress
    h = hashlib.sha256()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": f"gencli/{__version__}"})
        with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as f:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            with _progress_bar(desc or dest.name, total, show) as advance:
                while chunk := response.read(CHUNK):
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
            f"cannot download {url}: {first_line(str(reason)) or type(e).__name__}; "
            f"check your connection and try again, or place the file at {dest}"
        ) from e
    except OSError as e:
        raise GencliError(f"cannot write {dest}: {e.strerror or e}") from e
    finally:
        tmp.unlink(missing_ok=True)
    return dest
