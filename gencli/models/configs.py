"""Config dictionaries of the families (torch-free)."""

from __future__ import annotations

import copy
from typing import Any


def merge(base: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``base`` updated by ``overrides``, recursively for dicts (anything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in (overrides or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
