"""The declarative table of model families and their named checkpoints.

A family maps a name (``ddpm``) to the class implementing it (imported lazily, so listing the
registry costs no torch import), its capabilities, defaults, and named checkpoints. A named
checkpoint says where its weights come from:

  ``bundled:FILE``                  a file shipped in weights/ (installed as gencli._bundled)
  ``hf:org/repo[@rev][/path]``      the Hugging Face Hub (through huggingface_hub and its cache)
  ``url:https://...``               a plain download (e.g. official .pth files), sha256-verified

and in which format (``gencli`` safetensors, or a foreign format converted on load / once into
the cache). The CLI asks this module for models; it never builds them itself.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gencli.errors import CapabilityError, InputError, UsageError


@dataclass(frozen=True)
class CheckpointRef:
    name: str
    source: str
    description: str = ""
    format: str = "gencli"  # gencli | diffusers (others are added by their families)
    sha256: str | None = None
    dataset: str = ""


@dataclass(frozen=True)
class FamilySpec:
    name: str
    target: str  # "module:Class"
    description: str
    capabilities: tuple[str, ...]
    default_checkpoint: str | None = None
    checkpoints: tuple[CheckpointRef, ...] = ()
    sample_defaults: dict[str, Any] = field(default_factory=dict)
    group: str = ""  # e.g. "diffusion"

    def load_class(self) -> type:
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(module), cls)

    def checkpoint(self, name: str) -> CheckpointRef:
        for ref in self.checkpoints:
            if ref.name == name:
                return ref
        known = ", ".join(r.name for r in self.checkpoints) or "none"
        raise UsageError(f"{self.name} has no checkpoint named {name!r}; known: {known} "
                         f"(or pass --weights PATH|org/repo)")


_DDPM_CHECKPOINTS = (
    CheckpointRef("fashion-mnist", "bundled:ddpm-fashion-mnist.safetensors",
                  "class-conditional 28x28 Fashion-MNIST, trained by gencli (bundled)",
                  dataset="fashion-mnist"),
    CheckpointRef("cifar10", "hf:google/ddpm-cifar10-32", "Ho et al. 2020, CIFAR-10 32x32",
                  format="diffusers", dataset="cifar10"),
    CheckpointRef("celebahq", "hf:google/ddpm-celebahq-256", "Ho et al. 2020, CelebA-HQ 256x256",
                  format="diffusers", dataset="celebahq"),
    CheckpointRef("church", "hf:google/ddpm-church-256", "Ho et al. 2020, LSUN church 256x256",
                  format="diffusers", dataset="lsun-church"),
    CheckpointRef("bedroom", "hf:google/ddpm-bedroom-256", "Ho et al. 2020, LSUN bedroom 256x256",
                  format="diffusers", dataset="lsun-bedroom"),
    CheckpointRef("cat", "hf:google/ddpm-cat-256", "Ho et al. 2020, LSUN cat 256x256",
                  format="diffusers", dataset="lsun-cat"),
)

FAMILIES: dict[str, FamilySpec] = {
    "ddpm": FamilySpec(
        "ddpm", "gencli.models.diffusion.ddpm:DiffusionModel",
        "Denoising diffusion (Ho et al. 2020), ancestral DDPM sampling", ("sample", "interpolate"),
        default_checkpoint="fashion-mnist", checkpoints=_DDPM_CHECKPOINTS, group="diffusion"),
    "ddim": FamilySpec(
        "ddim", "gencli.models.diffusion.ddpm:DiffusionModel",
        "The same diffusion models sampled with DDIM (Song et al. 2021), 50 steps, eta 0",
        ("sample", "interpolate"), default_checkpoint="fashion-mnist",
        checkpoints=_DDPM_CHECKPOINTS, sample_defaults={"sampler": "ddim", "steps": 50},
        group="diffusion"),
}

# Families that share one implementation (and checkpoint files) with another.
FAMILY_OF_CHECKPOINT = {"ddim": "ddpm"}


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
          "encode": "encode", "decode": "decode", "log_likelihood": "compute likelihoods"}


def require_capability(name: str, capability: str) -> FamilySpec:
    spec = get_family(name)
    if capability not in spec.capabilities:
        able = families_with(capability)
        verb = _VERBS.get(capability, capability)
        hint = f"families that can: {', '.join(able)}" if able else f"no family can {verb} yet"
        raise CapabilityError(f"{name} cannot {verb}; {hint}")
    return spec


def checkpoint_family(name: str) -> str:
    """The family name written into checkpoints for ``name`` (ddim checkpoints are ddpm's)."""
    return FAMILY_OF_CHECKPOINT.get(name, name)


# --- resolving and loading -------------------------------------------------------------------
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
        from gencli.paths import cache_dir

        dest = cache_dir() / "downloads" / spec.name / Path(where).name
        return hub.download_url(where, dest, sha256=ref.sha256, desc=f"{spec.name} {name}"), ref.format
    raise ValueError(f"bad checkpoint source {ref.source!r}")


def _is_diffusers_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "config.json").exists() or (path / "unet" / "config.json").exists())


def load_model(name: str, checkpoint: str | None = None, weights: str | None = None,
               *, device: Any = "cpu", allow_download: bool = True):
    """Build family ``name`` and load its weights. Returns (model, metadata)."""
    from gencli import checkpoints

    spec = get_family(name)
    path, fmt = resolve_checkpoint(spec, checkpoint, weights, allow_download=allow_download)
    cls = spec.load_class()
    if fmt == "diffusers" or (fmt == "auto" and _is_diffusers_folder(path)):
        from gencli.convert.diffusers import load_diffusers

        config, tensors, meta = load_diffusers(path)
    else:
        if path.is_dir():
            candidates = sorted(path.glob("*.safetensors"))
            preferred = [p for p in candidates if p.name == "model.safetensors"]
            if not (preferred or len(candidates) == 1):
                raise InputError(f"{path} is a folder without model.safetensors or a diffusers "
                                 f"config.json; pass the checkpoint file itself")
            path = (preferred or candidates)[0]
        ckpt = checkpoints.load_checkpoint(path)
        checkpoints.require_family(ckpt, checkpoint_family(name))
        config, tensors, meta = ckpt.config, ckpt.tensors, ckpt.metadata
    model = cls.from_config(config)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        what = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}")
        raise InputError(f"{path}: weights do not fit the {name} network in its config "
                         f"({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. {what})")
    model.to(device).eval()
    meta = dict(meta)
    meta.setdefault("source", str(path))
    return model, meta
