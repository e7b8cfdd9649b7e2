"""A tiny fake Hugging Face Hub (and plain file server) for tests, on 127.0.0.1.

Real ``huggingface_hub`` calls (``hf_hub_download``, ``snapshot_download``) and ``urllib``
downloads run against it unchanged; nothing is mocked.  Usage::

    from hubserver import FakeHub, use_fake_hub

    def test_something(tmp_path, monkeypatch):
        with FakeHub(
            repos={
                "org/name": {"model.safetensors": data, "unet/config.json": b"{}"},  # branch main
                "org/name@v1": {"model.safetensors": old_data},                     # branch/tag v1
            },
            files={"/releases/latest_net_G.pth": pth_bytes},                        # plain URLs
        ) as hub:
            use_fake_hub(monkeypatch, hub, tmp_path / "hf")   # HF_ENDPOINT, HF_HOME, ... -> hub
            path = gencli.hub.resolve("org/name", filename="model.safetensors")
            gencli.hub.download_url(hub.url("/releases/latest_net_G.pth"), dest)
            assert hub.request_count == 3
            hub.reset_counts()
            use_fake_hub(monkeypatch, hub, tmp_path / "hf", offline=True)  # HF_HUB_OFFLINE=1
            ...
            assert hub.request_count == 0   # "no network was used"

What it serves (the requests huggingface_hub 0.23 - 2.x makes):

- ``HEAD|GET /{repo}/resolve/{revision}/{path}``: the file, with ``X-Repo-Commit``, ``ETag``
  (git blob sha1), and for LFS-like files (``.safetensors``, ``.bin``, ``.pth``, ``.pt``,
  ``.ckpt``, ``.npz``, ``.onnx``, ``.gz``, ``.zip``) ``X-Linked-Etag`` (sha256) and
  ``X-Linked-Size``, as the real Hub does.
- ``GET /api/models/{repo}[/revision/{revision}]``: ``{"id", "sha", "siblings"}``.
- ``GET /api/models/{repo}/tree/{revision}[/{path}]?recursive=...``: the file listing.
- ``datasets/`` and ``spaces/`` repos: key them as ``"datasets/org/name"``.
- Errors as the Hub sends them: 404 with ``X-Error-Code`` ``RepoNotFound`` /
  ``RevisionNotFound`` / ``EntryNotFound``; 401 ``RepoNotFound`` for a wrong/missing token when
  ``token=`` is set.
- ``files``: any other URL path, served as a plain file (``HEAD``/``GET``), 404 otherwise.
  ``truncate={"/path": n}`` announces the full ``Content-Length`` but sends only ``n`` bytes and
  closes the connection (an interrupted transfer).

A revision is a branch/tag name or the commit sha (``hub.commit("org/name", "v1")``; commit
shas are deterministic: sha1 of the repo id, revision and content).  Every request is recorded
in ``hub.requests`` (method, path, headers with lower-case names).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".npz", ".onnx", ".gz", ".zip")
_REPO_TYPE_PREFIXES = {"datasets": "datasets/", "spaces": "spaces/", "models": ""}


@dataclass(frozen=True)
class Request:
    """One request the server received (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (what the Hub uses as ETag for non-LFS files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Revision:
    def __init__(self, repo_key: str, name: str, files: Mapping[str, bytes]) -> None:
        self.files = {path.strip("/"): bytes(data) for path, data in files.items()}
        h = hashlib.sha1(f"{repo_key}@{name}".encode())
        for path in sorted(self.files):
            h.update(path.encode() + b"\0" + hashlib.sha256(self.files[path]).digest())
        self.sha = h.hexdigest()


class FakeHub:
    """Threaded HTTP server imitating the Hub's download API plus plain files.

    Args:
        repos: ``{"org/name": {path: bytes}}`` (branch ``main``) and ``{"org/name@rev": {...}}``
            for other branches/tags; prefix ``datasets/`` or ``spaces/`` for other repo types.
        files: ``{"/url/path": bytes}`` served as plain files.
        token: if set, repo requests must send ``Authorization: Bearer <token>`` (else 401).
        truncate: ``{"/url/path": n}``: send only ``n`` bytes of that file, then close.
    """

    def __init__(
        self,
        repos: Mapping[str, Mapping[str, bytes]] | None = None,
        files: Mapping[str, bytes] | None = None,
        *,
        token: str | None = None,
        truncate: Mapping[str, int] | None = None,
    ) -> None:
        self._repos: dict[str, dict[str, _Revision]] = {}
        self.files: dict[str, bytes] = {}
        self.token = token
        self.truncate: dict[str, int] = dict(truncate or {})
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        for key, content in (repos or {}).items():
            repo, _, rev = key.partition("@")
            self.add_repo(repo, content, revision=rev or "main")
        for path, data in (files or {}).items():
            self.add_file(path, data)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- content --------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: Mapping[str, bytes], *, revision: str = "main") -> str:
        """Add (or replace) a branch/tag of a repo; returns its commit sha."""
        rev = _Revision(repo_id, revision, files)
        with self._lock:
            self._repos.setdefault(repo_id, {})[revision] = rev
        return rev.sha

    def add_file(self, path: str, data: bytes) -> None:
        """Serve ``data`` at the URL path ``path`` (e.g. ``/releases/model.pth``)."""
        with self._lock:
            self.files["/" + path.lstrip("/")] = bytes(data)

    def commit(self, repo_id: str, revision: str = "main") -> str:
        """The commit sha of a branch/tag."""
        return self._repos[repo_id][revision].sha

    # -- server ---------------------------------------------------------------------------

    def start(self) -> FakeHub:
        if self._server is None:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
            self._server.daemon_threads = True
            self._thread = threading.Thread(target=self._server.serve_forever, name="FakeHub", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; later requests get 'connection refused'."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeHub is not running; use it as a context manager or call start()")
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        """Base URL to use as ``HF_ENDPOINT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """Full URL of a plain file path (``hub.url("/releases/x.pth")``)."""
        return self.endpoint + "/" + quote(path.lstrip("/"))

    # -- request log ----------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()

    def _record(self, method: str, path: str, headers: Mapping[str, str]) -> None:
        with self._lock:
            self.requests.append(Request(method, path, {k.lower(): v for k, v in headers.items()}))

    # -- lookups used by the handler ------------------------------------------------------

    def _find_repo(self, segments: list[str]) -> tuple[str, dict[str, _Revision], list[str]] | None:
        """Split URL segments into (repo key, revisions, rest); None if no repo matches."""
        prefix = ""
        if segments and segments[0] in ("datasets", "spaces"):
            prefix, segments = segments[0] + "/", segments[1:]
        with self._lock:
            for n in (2, 1):
                if len(segments) >= n:
                    key = prefix + "/".join(segments[:n])
                    if key in self._repos:
                        return key, self._repos[key], segments[n:]
        return None

    @staticmethod
    def _find_revision(revisions: dict[str, _Revision], name: str) -> _Revision | None:
        if name in revisions:
            return revisions[name]
        for rev in revisions.values():
            if rev.sha == name:
                return rev
        return None


def _make_handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: simple and robust
        server_version = "FakeHub/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def do_HEAD(self) -> None:
            self._handle(head=True)

        def do_GET(self) -> None:
            self._handle(head=False)

        # -- plumbing ---------------------------------------------------------------------

        def _send(
            self,
            status: int,
            body: bytes = b"",
            headers: Mapping[str, str] | None = None,
            *,
            head: bool,
            content_type: str = "application/octet-stream",
            send_only: int | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if not head:
                self.wfile.write(body if send_only is None else body[:send_only])
                self.wfile.flush()
            if send_only is not None:
                self.close_connection = True

        def _json(self, obj: Any, *, head: bool, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
            self._send(status, json.dumps(obj).encode(), headers, head=head, content_type="application/json")

        def _error(
            self, status: int, code: str | None, message: str, *, head: bool, extra: Mapping[str, str] | None = None
        ) -> None:
            headers = dict(extra or {})
            if code:
                headers["X-Error-Code"] = code
            headers["X-Error-Message"] = message
            self._json({"error": message}, head=head, status=status, headers=headers)

        def _authorized(self) -> bool:
            if hub.token is None:
                return True
            return self.headers.get("Authorization", "") == f"Bearer {hub.token}"

        # -- routing ----------------------------------------------------------------------

        def _handle(self, *, head: bool) -> None:
            split = urlsplit(self.path)
            hub._record(self.command, self.path, self.headers)
            segments = [unquote(s) for s in split.path.strip("/").split("/")] if split.path.strip("/") else []
            query = parse_qs(split.query)
            if segments and segments[0] == "api":
                return self._api(segments[1:], query, head=head)
            found = hub._find_repo(segments)
            if found is not None and len(found[2]) >= 1 and found[2][0] == "resolve":
                return self._resolve(found, found[2][1:], head=head)
            path = "/" + "/".join(segments)
            with hub._lock:
                data = hub.files.get(path)
                cut = hub.truncate.get(path)
            if data is not None:
                return self._send(200, data, head=head, send_only=cut)
            if len(segments) >= 4 and "resolve" in segments[1:4]:
                return self._error(404, "RepoNotFound", "Repository not found", head=head)
            return self._error(404, None, "Not found", head=head)

        def _resolve(self, found: tuple[str, dict[str, _Revision], list[str]], rest: list[str], *, head: bool) -> None:
            repo, revisions, _ = found
            if not self._authorized():
                return self._error(401, "RepoNotFound", "Invalid username or password.", head=head)
            if len(rest) < 2:
                return self._error(404, "EntryNotFound", "Entry not found", head=head)
            rev = hub._find_revision(revisions, rest[0])
            if rev is None:
                return self._error(404, "RevisionNotFound", "Invalid rev id: " + rest[0], head=head)
            path = "/".join(rest[1:])
            data = rev.files.get(path)
            if data is None:
                return self._error(404, "EntryNotFound", "Entry not found", head=head, extra={"X-Repo-Commit": rev.sha})
            headers = {"X-Repo-Commit": rev.sha, "ETag": f'"{git_blob_sha1(data)}"', "Accept-Ranges": "bytes"}
            if path.endswith(LFS_SUFFIXES):
                headers["X-Linked-Etag"] = f'"{hashlib.sha256(data).hexdigest()}"'
                headers["X-Linked-Size"] = str(len(data))
            self._send(200, data, headers, head=head)

        def _api(self, segments: list[str], query: dict[str, list[str]], *, head: bool) -> None:
            # /api/{models|datasets|spaces}/{repo_id}[/revision/{rev} | /tree/{rev}[/{path}]]
            if not segments or segments[0] not in _REPO_TYPE_PREFIXES:
                return self._error(404, None, "Not found", head=head)
            prefix = _REPO_TYPE_PREFIXES[segments[0]]
            rest_segments = segments[1:]
            found = None
            for n in (2, 1):
                if len(rest_segments) >= n:
                    key = prefix + "/".join(rest_segments[:n])
                    with hub._lock:
                        if key in hub._repos:
                            found = (key, hub._repos[key], rest_segments[n:])
                            break
            if found is None or not self._authorized():
                status = 401 if hub.token is not None else 404
                return self._error(status, "RepoNotFound", "Repository not found", head=head)
            repo, revisions, rest = found
            repo_id = repo[len(prefix) :]
            if not rest or rest[0] == "revision":
                name = rest[1] if len(rest) > 1 else "main"
                rev = hub._find_revision(revisions, name)
                if rev is None:
                    return self._error(404, "RevisionNotFound", "Invalid rev id: " + name, head=head)
                info = {"id": repo_id, "sha": rev.sha, "private": hub.token is not None,
                        "siblings": [{"rfilename": p} for p in sorted(rev.files)]}
                return self._json(info, head=head)
            if rest[0] == "tree" and len(rest) >= 2:
                rev = hub._find_revision(revisions, rest[1])
                if rev is None:
                    return self._error(404, "RevisionNotFound", "Invalid rev id: " + rest[1], head=head)
                base = "/".join(rest[2:]).strip("/")
                recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                return self._json(_tree(rev, base, recursive), head=head)
            return self._error(404, None, "Not found", head=head)

    return Handler


def _tree(rev: _Revision, base: str, recursive: bool) -> list[dict[str, Any]]:
    """Hub-style tree listing of ``base`` (files and folders), sorted like the Hub."""
    prefix = base + "/" if base else ""
    entries: dict[str, dict[str, Any]] = {}
    for path, data in sorted(rev.files.items()):
        if not path.startswith(prefix):
            continue
        rel = path[len(prefix) :]
        parts = rel.split("/")
        # folders on the way
        for i in range(1, len(parts)):
            if not recursive and i > 1:
                break
            folder = prefix + "/".join(parts[:i])
            entries.setdefault(folder, {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(),
                                        "size": 0, "path": folder})
        if not recursive and len(parts) > 1:
            continue
        entry: dict[str, Any] = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}
        if path.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        entries[path] = entry
    return list(entries.values())


# ------------------------------------------------------------------------------------------
# Pointing huggingface_hub at a FakeHub
# ------------------------------------------------------------------------------------------


def use_fake_hub(monkeypatch: Any, hub: FakeHub | str | None, hf_home: Path, *, offline: bool = False) -> Path:
    """Point huggingface_hub (and gencli) at ``hub`` with its cache under ``hf_home``.

    Sets the environment variables *and* the ``huggingface_hub.constants`` attributes that
    huggingface_hub reads only once at import time (``ENDPOINT``, ``HUGGINGFACE_CO_URL_TEMPLATE``,
    ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_ASSETS_CACHE``, ``HF_XET_CACHE``, ``HF_TOKEN_PATH``,
    ``HF_STORED_TOKENS_PATH``, ``HF_HUB_OFFLINE`` and the other files kept under ``HF_HOME``).
    Note: huggingface_hub >= 2 may fetch ``/api/agent-harnesses`` once per process (the fake
    answers 404, which it tolerates); compare request counts as deltas or after
    ``hub.reset_counts()``.  Removes any ``HF_TOKEN`` so a developer's
    token never reaches the fake server.  ``hub=None`` keeps the current endpoint (useful to
    flip only ``offline``).  Returns the HF hub cache folder.  Call again to change ``offline``.
    """
    from huggingface_hub import constants

    hf_home = Path(hf_home)
    cache = hf_home / "hub"
    if hub is not None:
        endpoint = hub if isinstance(hub, str) else hub.endpoint
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        )
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("GENCLI_OFFLINE", raising=False)
    for name, value in {
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(cache),
        "HUGGINGFACE_HUB_CACHE": str(cache),
        "HF_ASSETS_CACHE": str(hf_home / "assets"),
        "HUGGINGFACE_ASSETS_CACHE": str(hf_home / "assets"),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "CHECK_FOR_UPDATE_DONE_PATH": str(hf_home / ".check_for_update_done"),
        "CHECK_FOR_SKILL_UPDATE_DONE_PATH": str(hf_home / ".check_for_skill_update_done"),
        "AGENT_HARNESSES_PATH": str(hf_home / ".agent_harnesses.json"),
        "HF_HUB_OFFLINE": offline,
    }.items():
        monkeypatch.setattr(constants, name, value, raising=False)
    return cache
