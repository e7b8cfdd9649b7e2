"""Parse weights references: ``org/repo[@rev]`` and ``hf://[datasets/]org/repo[@rev][/path]``.

Also says which references can only mean a file on disk, and which Hub paths are folders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# A reference ending in one of these is a file name, never a Hub repo.
_FILE_SUFFIXES = {".safetensors", ".pth", ".pt", ".ckpt", ".bin", ".json", ".npz", ".onnx", ".h5", ".msgpack"}
_REPO_ID = re.compile(r"[A-Za-z0-9_][\w.-]{0,95}/[A-Za-z0-9_][\w.-]{0,95}")
_BARE_HUB_REF = re.compile(rf"(?P<repo>{_REPO_ID.pattern})(?:@(?P<rev>\S+))?")
_SPECIAL_REF = re.compile(r"refs/(?:convert/[\w.-]+|pr/\d+)")


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


def looks_like_local_path(ref: str) -> bool:
    """True for references that can only mean a file on disk (so a miss is 'no such file')."""
    if ref.startswith("hf://"):
        return False
    if ref.startswith(("/", "./", "../", "~", ".\\", "..\\")) or "\\" in ref or re.match(r"[A-Za-z]:[\\/]", ref):
        return True
    base = ref.split("@", 1)[0]
    return base.count("/") >= 2 or Path(base).suffix.lower() in _FILE_SUFFIXES


def is_folder_path(path: str) -> bool:
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return path.endswith("/") or "." not in last
