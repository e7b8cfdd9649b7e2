"""The registry: every registered name (a family or a preset) -> its :class:`FamilySpec`.

The registry is data. It collects the ``SPECS`` of each family package's torch-free ``spec.py``
(``gencli/models/<family>/spec.py``; a new family is registered by adding that folder), expands
presets (``ddim`` = ``ddpm`` with DDIM options), and resolves and loads checkpoints: a named
checkpoint's ``source`` says where its weights come from,

  ``bundled:FILE``                  a file shipped in weights/ (installed as gencli._bundled)
  ``hf:org/repo[@rev][/path]``      the Hugging Face Hub (through huggingface_hub and its cache)
  ``url:https://...``               a plain download (e.g. official .pth files), sha256-verified

and its ``format`` how to read it (gencli safetensors, or a foreign format of gencli.formats).
The commands ask this module for specs and models; they never name a family themselves.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path
from typing import Any

from gencli.errors import CapabilityError, InputError, UsageError, WeightsNotFound
from gencli.models.spec import Checkpoint, CheckpointRef, FamilySpec, Preset  # noqa: F401 (re-exported)


def _collect_specs() -> dict[str, FamilySpec]:
    """name -> spec for every family package with a spec.py (and each family's presets)."""
    import gencli.models as models_pkg

    found: dict[str, FamilySpec] = {}
    for info in sorted(pkgutil.iter_modules(models_pkg.__path__), key=lambda m: m.name):
        # look for the file: importing a package without a spec (layers, gan) would import torch
        if not info.ispkg or not (Path(info.module_finder.path) / info.name / "spec.py").is_file():
            continue
        module = importlib.import_module(f"gencli.models.{info.name}.spec")
        for spec in getattr(module, "SPECS", ()):
            for item in (spec, *(spec.with_preset(p) for p in spec.presets)):
                if item.name in found:
                    raise ValueError(f"model name {item.name!r} is registered twice")
                found[item.name] = item
    return found


FAMILIES: dict[str, FamilySpec] = _collect_specs()


def family_names() -> list[str]:
    return list(FAMILIES)


def get_family(name: str) -> FamilySpec:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; known: {', '.join(FAMILIES)} "
                         f"(see `gencli models`)") from None


def families_with(capability: str) -> list[str]:
    return [n for n, f in FAMILIES.items() if capability in f.capabilities]


_VERBS = {"sample": "sample", "interpolate": "interpolate", "translate": "translate",
          "encode": "encode", "decode": "decode", "log_likelihood": "compute likelihoods",
          "traverse": "traverse its latents", "export_onnx": "export"}


def require_capability(name: str, capability: str) -> FamilySpec:
    spec = get_family(name)
    if capability not in spec.capabilities:
        able = families_with(capability)
        verb = _VERBS.get(capability, capability)
        hint = f"families that can: {', '.join(able)}" if able else f"no family can {verb} yet"
        raise CapabilityError(f"{name} cannot {verb}; {hint}")
    return spec


def checkpoint_family(name: str) -> str:
    """The family written into checkpoints for ``name`` (a preset's checkpoints are its family's)."""
    return get_family(name).family


# --- resolving and loading -------------------------------------------------------------------
def names_checkpoint(spec: FamilySpec, ref: str) -> bool:
    """Whether a weights reference ``ref`` is one of ``spec``'s checkpoint names (a file or
    folder of that name on disk wins)."""
    return not os.path.exists(ref) and ref in {c.name for c in spec.checkpoints}


def resolve_checkpoint(spec: FamilySpec, name: str | None = None, weights: str | None = None,
                       *, allow_download: bool = True) -> tuple[Path, str]:
    """(local path, format) for ``--weights`` or a named checkpoint (default when both None)."""
    from gencli import hub

    if weights:
        return hub.resolve(weights, allow_download=allow_download), "auto"
    name = name or spec.default_checkpoint
    if name is None:
        raise UsageError(f"{spec.name} has no default checkpoint; pass --weights PATH")
    ref = spec.checkpoint(name)
    kind, _, where = ref.source.partition(":")
    if kind == "bundled":
        return hub.resolve(where, sha256=ref.sha256, allow_download=False), ref.format
    if kind == "hf":
        return hub.resolve(where, sha256=ref.sha256, allow_download=allow_download), ref.format
    if kind == "url":
        from gencli import formats
        from gencli.hub.urls import download_url
        from gencli.paths import download_path

        if ref.format != formats.NATIVE:  # e.g. official .pth files: converted once into the cache
            fetched = formats.get_format(ref.format).fetch(spec.family, ref, allow_download=allow_download)
            if fetched is not None:
                return fetched, formats.NATIVE
        dest = download_path(spec.family, Path(where).name)
        if not allow_download and not dest.exists():
            raise WeightsNotFound(f"{spec.name} {name} is not in the cache ({dest}); "
                                  f"run `gencli pull {spec.name} {name}` when online")
        return download_url(where, dest, sha256=ref.sha256, desc=f"{spec.name} {name}"), ref.format
    raise ValueError(f"bad checkpoint source {ref.source!r}")


def read_weights(path: Path, fmt: str, family: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(config, tensors, metadata) of the checkpoint at ``path`` for ``family`` (gencli.formats)."""
    from gencli import formats

    return formats.read_checkpoint(path, family=family, fmt=fmt)


def build_checked(spec: FamilySpec, config: dict[str, Any], tensors: dict[str, Any], where: Any):
    """The network of ``config`` holding ``tensors``, checked before any memory is touched.

    The network is first built on the meta device (no allocation), its parameter and buffer
    names and shapes compared with the file's; only a config that fits the file is built for real.
    A hostile config (absurd widths) or a file of another architecture is refused by name.
    """
    import torch

    cls = spec.load_class()
    try:
        with torch.device("meta"):
            probe = cls.from_config(config)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise InputError(f"{where}: its config is not a valid {spec.family} config "
                         f"({type(e).__name__}: {e})") from None
    expected = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    del probe
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        what = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}")
        raise InputError(f"{where}: weights do not fit the {spec.name} network in its config "
                         f"({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. {what})")
    for key, shape in expected.items():
        got = tuple(tensors[key].shape)
        if got != shape:
            raise InputError(f"{where}: {key} has shape {got} but the config asks for {shape}; "
                             f"the file's config and weights disagree")
    model = cls.from_config(config)
    model.load_state_dict(tensors, strict=True)
    return model


def load_model(name: str, checkpoint: str | None = None, weights: str | None = None,
               *, device: Any = "cpu", allow_download: bool = True):
    """Build ``name`` (a family or preset) and load its weights. Returns (model, metadata)."""
    spec = get_family(name)
    path, fmt = resolve_checkpoint(spec, checkpoint, weights, allow_download=allow_download)
    config, tensors, meta = read_weights(path, fmt, spec.family)
    model = build_checked(spec, config, tensors, meta.get("source", path))
    model.to(device).eval()
    meta = dict(meta)
    meta.setdefault("source", str(path))
    return model, meta
