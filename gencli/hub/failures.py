"""One-line WeightsNotFound messages for a failed Hub lookup: which reference, where we looked,
what to do; huggingface_hub and network exceptions translated into them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gencli.errors import GencliError, WeightsNotFound
from gencli.hub.env import hf_cache, hf_endpoint
from gencli.hub.refs import HubRef
from gencli.paths import bundled_weights_dir


@dataclass
class LookupContext:
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
            f"looked for a local file, in {bundled_weights_dir()}, in the HF cache {hf_cache()}"
            + ("" if self.offline else f" and on {hf_endpoint()}")
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
        endpoint = hf_endpoint()
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
                f"not a valid Hub reference ({first_line(e)})", "use org/repo[@rev] or hf://org/repo/file"
            )
        if isinstance(e, hf.HfHubHTTPError):
            status = getattr(getattr(e, "response", None), "status_code", "?")
            return self.not_found(
                f"{endpoint} answered HTTP {status}", "try again later, pass --weights PATH, or set HF_HUB_OFFLINE=1"
            )
        if _is_network_error(e):
            return self.not_found(
                f"download from {endpoint} failed ({type(e).__name__}: {first_line(e)})",
                "check your connection and try again, or pass --weights PATH",
            )
        raise e


def _is_network_error(e: BaseException) -> bool:
    import http.client

    if isinstance(e, (OSError, ConnectionError, TimeoutError, http.client.HTTPException)):
        return True
    root = type(e).__module__.split(".", 1)[0]
    return root in {"httpx", "httpx2", "httpcore", "requests", "urllib3"}


def first_line(e: BaseException | str) -> str:
    text = str(e).strip() or (type(e).__name__ if isinstance(e, BaseException) else "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else text
