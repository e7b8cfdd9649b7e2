"""Convert official pytorch-CycleGAN-and-pix2pix generator ``.pth`` files to gencli checkpoints.

The official code saves ``net.state_dict()`` of a ResnetGenerator or UnetGenerator with
``torch.save`` (``latest_net_G.pth``, ``latest_net_G_A.pth``; the published pretrained models
are single generators named ``NAME.pth``). The file is read with
:func:`gencli.convert.torchfile.load_torch_file` (no pickled code runs), then:

- a ``module.`` prefix (a DataParallel save) is removed;
- the architecture is inferred from the keys and shapes: ResnetGenerator (``model.1`` ...,
  ``n_blocks`` from the ``model.N.conv_block`` entries, dropout when the second conv of a block
  is ``conv_block.6`` instead of ``conv_block.5``, zero padding when it is ``conv_block.3``/``.4``)
  or UnetGenerator (``model.model.0`` ..., ``num_downs`` from the nesting depth); ngf and the
  channel counts from the first and last convolutions; batch norm when the norm layers carry
  affine weights (and the convolutions no bias), else instance norm;
- the InstanceNorm ``running_mean``/``running_var``/``num_batches_tracked`` entries that files
  written by old PyTorch versions carry are dropped (as the official loader does); a BatchNorm
  without ``num_batches_tracked`` (pre-0.4 files) gets a zero one;
- the result is checked by loading it strictly into the gencli network built from the inferred
  config, and written as one safetensors file with the config in its metadata.

U-Net dropout has no parameters, so it cannot be seen in the keys: official pix2pix generators
use it (``dropout=True`` is the default for ``pix2pix``), CycleGAN ones do not.

The pretrained files are fetched and converted by :mod:`gencli.convert.official_download`;
the architecture inference is in :mod:`gencli.convert.official_generators`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from gencli.convert.official_generators import clean_state_dict, describe, infer_generator_config
from gencli.errors import InputError, UsageError

FAMILIES = ("cyclegan", "pix2pix")
FORMATS = {"cyclegan-pth": "cyclegan", "pix2pix-pth": "pix2pix"}
#: The official one-way CycleGAN generators that have a published opposite.
OFFICIAL_REVERSE = {a: b for x, y in (
    ("horse2zebra", "zebra2horse"), ("summer2winter_yosemite", "winter2summer_yosemite"),
    ("apple2orange", "orange2apple"), ("map2sat", "sat2map"), ("monet2photo", "style_monet"),
    ("cityscapes_photo2label", "cityscapes_label2photo"), ("facades_photo2label", "facades_label2photo"),
) for a, b in ((x, y), (y, x))}


# --------------------------------------------------------------------------------------------
# Reading


def load_pth(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of an official ``.pth`` state dict (:func:`~gencli.convert.torchfile.load_torch_file`)."""
    from gencli.convert.torchfile import load_torch_file

    return load_torch_file(path)


# --------------------------------------------------------------------------------------------
# Conversion


def official_to_gencli(sources: Sequence[str | os.PathLike[str]] | str | os.PathLike[str], family: str, *,
                       name: str | None = None, dropout: bool | None = None,
                       extra_metadata: Mapping[str, Any] | None = None
                       ) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """(config, tensors, metadata) of a gencli checkpoint made from official generator file(s).

    ``family`` is ``cyclegan`` (one file: a one-way G_A; two files: G_A (A->B) then G_B (B->A),
    e.g. ``latest_net_G_A.pth latest_net_G_B.pth``) or ``pix2pix`` (one file).
    """
    from gencli.hub.checksums import sha256_file
    from gencli.models.translation.cyclegan import CycleGAN
    from gencli.models.translation.pix2pix import Pix2Pix

    if family not in FAMILIES:
        raise UsageError(f"official .pth files exist for {' and '.join(FAMILIES)}, not {family}")
    paths = [Path(sources)] if isinstance(sources, (str, os.PathLike)) else [Path(s) for s in sources]
    if not paths or len(paths) > (2 if family == "cyclegan" else 1):
        raise UsageError(f"{family} conversion takes {'one or two generator files (G_A, G_B)' if family == 'cyclegan' else 'one generator file'}, got {len(paths)}")
    gens: list[tuple[dict[str, Any], dict[str, torch.Tensor], list[str]]] = []
    for p in paths:
        sd = load_pth(p)
        cfg = infer_generator_config(sd, str(p), dropout)
        if cfg["arch"] == "unet" and dropout is None and family == "cyclegan":
            cfg["dropout"] = False
        tensors, dropped = clean_state_dict(sd, cfg, str(p))
        gens.append((cfg, tensors, dropped))
    stem = name or paths[0].stem
    if family == "cyclegan":
        if len(gens) == 2:
            (ca, _, _), (cb, _, _) = gens
            shared = {k: v for k, v in ca.items() if k not in ("input_nc", "output_nc")}
            other = {k: v for k, v in cb.items() if k not in ("input_nc", "output_nc")}
            if shared != other or ca["input_nc"] != cb["output_nc"] or ca["output_nc"] != cb["input_nc"]:
                raise InputError(f"{paths[0]} ({describe(ca)}) and {paths[1]} ({describe(cb)}) are not the two "
                                 "generators of one CycleGAN (G_A: A->B, G_B: B->A)")
        gen_cfg = gens[0][0]
        config = CycleGAN.inference_config(gen_cfg, directions=["AtoB", "BtoA"][:len(gens)], name=stem,
                                           reverse_name=OFFICIAL_REVERSE.get(stem))
        tensors = {f"G_{d}.{k}": v for d, (_, t, _) in zip("AB", gens) for k, v in t.items()}
    else:
        gen_cfg = gens[0][0]
        config = Pix2Pix.inference_config(gen_cfg, name=stem)
        tensors = {f"G.{k}": v for k, v in gens[0][1].items()}
    dropped = sum(len(d) for _, _, d in gens)
    meta: dict[str, Any] = {
        "family": family,
        "config": config,
        "dataset": stem,
        "image_size": config["image_size"],
        "channels": config["channels"],
        "notes": (f"converted from the official pytorch-CycleGAN-and-pix2pix generator"
                  f"{'s' if len(paths) > 1 else ''} {', '.join(p.name for p in paths)}: {describe(gen_cfg)}"
                  + (f"; dropped {dropped} legacy InstanceNorm statistics entries" if dropped else "")),
        "source_files": [p.name for p in paths],
        "source_sha256": [sha256_file(p) for p in paths],
    }
    meta.update(extra_metadata or {})
    return config, tensors, meta


def convert_file(sources: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
                 dest: str | os.PathLike[str], family: str, *, force: bool = False,
                 name: str | None = None, dropout: bool | None = None,
                 extra_metadata: Mapping[str, Any] | None = None) -> Path:
    """`gencli convert cyclegan|pix2pix SRC... -o DEST`: write the gencli safetensors file."""
    from gencli.checkpoints import save_checkpoint

    _, tensors, meta = official_to_gencli(sources, family, name=name, dropout=dropout,
                                          extra_metadata=extra_metadata)
    return save_checkpoint(dest, tensors, meta, force=force)


def _sources(src: str | os.PathLike[str], family: str) -> list[Path]:
    """The generator file(s) of ``src``: a file, ``G_A.pth,G_B.pth``, or an official checkpoints folder."""
    text = str(src)
    if "," in text and not Path(text).exists():
        return [Path(p.strip()).expanduser() for p in text.split(",") if p.strip()]
    path = Path(text).expanduser()
    if path.is_dir():
        pair = [path / "latest_net_G_A.pth", path / "latest_net_G_B.pth"]
        if family == "cyclegan" and all(p.is_file() for p in pair):
            return pair
        single = path / "latest_net_G.pth"
        if single.is_file():
            return [single]
        raise InputError(f"{path} holds no latest_net_G.pth" + (" or latest_net_G_A.pth + latest_net_G_B.pth"
                                                                  if family == "cyclegan" else "")
                         + "; pass the generator .pth file")
    return [path]


def convert_cyclegan(src: str, out: str, *, force: bool = False) -> Path:
    """`gencli convert cyclegan SRC -o OUT`: SRC is NAME.pth / latest_net_G.pth (one direction),
    ``latest_net_G_A.pth,latest_net_G_B.pth`` or an official checkpoints folder holding both (two)."""
    paths = _sources(src, "cyclegan")
    name = paths[0].stem if len(paths) == 1 else None
    if name and name.startswith("latest_net_"):
        name = None
    return convert_file(paths, out, "cyclegan", force=force,
                        name=name or (Path(str(src)).name if Path(str(src)).is_dir() else Path(out).stem))


def convert_pix2pix(src: str, out: str, *, force: bool = False) -> Path:
    """`gencli convert pix2pix SRC -o OUT`: SRC is NAME.pth / latest_net_G.pth or its checkpoints folder."""
    paths = _sources(src, "pix2pix")
    name = paths[0].stem
    if name.startswith("latest_net_"):
        name = Path(str(src)).name if Path(str(src)).is_dir() else Path(out).stem
    return convert_file(paths, out, "pix2pix", force=force, name=name)


def is_official_pth(path: str | os.PathLike[str]) -> bool:
    """True for a file that looks like a PyTorch ``.pth``/``.pt`` (zip or legacy pickle), not safetensors."""
    p = Path(path)
    if not p.is_file():
        return False
    if p.suffix.lower() in (".pth", ".pt"):
        return True
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head[:2] == b"PK" or head[:1] == b"\x80"


def load_official(path: str | os.PathLike[str], family: str
                  ) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """For ``--weights FILE.pth``: convert in memory (nothing is written)."""
    config, tensors, meta = official_to_gencli(path, family)
    meta.setdefault("source", str(path))
    return config, tensors, meta


__all__ = [
    "FORMATS", "load_pth", "official_to_gencli", "convert_file", "convert_cyclegan", "convert_pix2pix",
    "is_official_pth", "load_official",
]
