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

from gencli.errors import CapabilityError, InputError, UsageError, WeightsNotFound


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

# --- image-to-image translation: CycleGAN and pix2pix (gencli.models.translation) ---------------
# The official pretrained generators of junyanz/pytorch-CycleGAN-and-pix2pix exist only as .pth
# files on the authors' site (no Hub mirror): the "cyclegan-pth"/"pix2pix-pth" formats make
# resolve_checkpoint download one, convert it once into cache_dir()/converted/ and use that file.
# sha256 None: these files could not be fetched where this table was written (no network); pinning
# them needs one networked run (the converted file's metadata records the sha256 it saw).
_CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/{}.pth"
_PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/{}.pth"
_CYCLEGAN_OFFICIAL = (  # name, dataset, description (all resnet_9blocks, instance norm, RGB, one direction)
    ("horse2zebra", "horse2zebra", "horse -> zebra (ImageNet), official CycleGAN"),
    ("zebra2horse", "horse2zebra", "zebra -> horse (ImageNet), official CycleGAN"),
    ("monet2photo", "monet2photo", "Monet painting -> photo, official CycleGAN"),
    ("style_monet", "monet2photo", "photo -> Monet style, official CycleGAN"),
    ("style_cezanne", "cezanne2photo", "photo -> Cezanne style, official CycleGAN"),
    ("style_ukiyoe", "ukiyoe2photo", "photo -> Ukiyo-e style, official CycleGAN"),
    ("style_vangogh", "vangogh2photo", "photo -> Van Gogh style, official CycleGAN"),
    ("summer2winter_yosemite", "summer2winter_yosemite", "Yosemite summer -> winter, official CycleGAN"),
    ("winter2summer_yosemite", "summer2winter_yosemite", "Yosemite winter -> summer, official CycleGAN"),
    ("apple2orange", "apple2orange", "apple -> orange (ImageNet), official CycleGAN"),
    ("orange2apple", "apple2orange", "orange -> apple (ImageNet), official CycleGAN"),
    ("map2sat", "maps", "Google map -> aerial photo, official CycleGAN"),
    ("sat2map", "maps", "aerial photo -> Google map, official CycleGAN"),
    ("cityscapes_photo2label", "cityscapes", "street photo -> Cityscapes label colours, official CycleGAN"),
    ("cityscapes_label2photo", "cityscapes", "Cityscapes label colours -> street photo, official CycleGAN"),
    ("facades_photo2label", "facades", "facade photo -> CMP label colours, official CycleGAN"),
    ("facades_label2photo", "facades", "CMP label colours -> facade photo, official CycleGAN"),
    ("iphone2dslr_flower", "iphone2dslr_flower", "iPhone flower photo -> DSLR shallow depth of field, official CycleGAN"),
)
_PIX2PIX_OFFICIAL = (  # all unet_256, batch norm, dropout kept at test time (as the official test.py)
    ("edges2shoes", "edges2shoes", "edge map -> shoe photo (UT Zappos50K), official pix2pix"),
    ("sat2map", "maps", "aerial photo -> Google map, official pix2pix"),
    ("map2sat", "maps", "Google map -> aerial photo, official pix2pix"),
    ("facades_label2photo", "facades", "CMP label colours -> facade photo, official pix2pix"),
    ("day2night", "day2night", "daytime -> night scene (Transient Attributes), official pix2pix"),
)
FAMILIES["cyclegan"] = FamilySpec(
    "cyclegan", "gencli.models.translation.cyclegan:CycleGAN",
    "Unpaired image-to-image translation (Zhu et al. 2017), official generators", ("translate",),
    default_checkpoint="sneaker2boot",
    checkpoints=(
        CheckpointRef("sneaker2boot", "bundled:cyclegan-sneaker2boot.safetensors",
                      "Fashion-MNIST sneaker <-> ankle boot, both directions, trained by gencli (bundled)",
                      dataset="fashion-mnist"),
        *(CheckpointRef(n, "url:" + _CYCLEGAN_URL.format(n), d, format="cyclegan-pth", dataset=ds)
          for n, ds, d in _CYCLEGAN_OFFICIAL),
    ),
    group="translation")
FAMILIES["pix2pix"] = FamilySpec(
    "pix2pix", "gencli.models.translation.pix2pix:Pix2Pix",
    "Paired image-to-image translation (Isola et al. 2017), official generators", ("translate",),
    default_checkpoint="edges2fashion",
    checkpoints=(
        CheckpointRef("edges2fashion", "bundled:pix2pix-edges2fashion.safetensors",
                      "Fashion-MNIST edge map -> image, trained by gencli (bundled)", dataset="fashion-mnist"),
        *(CheckpointRef(n, "url:" + _PIX2PIX_URL.format(n), d, format="pix2pix-pth", dataset=ds)
          for n, ds, d in _PIX2PIX_OFFICIAL),
    ),
    group="translation")

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
        if ref.format in ("cyclegan-pth", "pix2pix-pth"):  # official .pth: converted once into the cache
            from gencli.convert.official_cyclegan import resolve_official

            return resolve_official(spec.name, ref, allow_download=allow_download), "gencli"
        from gencli.paths import cache_dir

        dest = cache_dir() / "downloads" / spec.name / Path(where).name
        if not allow_download and not dest.exists():
            raise WeightsNotFound(f"{spec.name} {name} is not in the cache ({dest}); "
                                  f"run `gencli pull {spec.name} {name}` when online")
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
    elif fmt == "auto" and spec.name in ("cyclegan", "pix2pix") and path.suffix.lower() in (".pth", ".pt"):
        from gencli.convert.official_cyclegan import load_official  # --weights latest_net_G.pth

        config, tensors, meta = load_official(path, spec.name)
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
