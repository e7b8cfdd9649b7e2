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

The pretrained files are fetched from the official download site by :func:`resolve_official`
(called by the registry for ``url:`` checkpoints in the ``cyclegan-pth``/``pix2pix-pth``
formats), converted once into ``cache_dir()/converted/<family>/<name>.safetensors``, and the
downloaded ``.pth`` is then removed.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from gencli.errors import InputError, UsageError, WeightsNotFound

FAMILIES = ("cyclegan", "pix2pix")
FORMATS = {"cyclegan-pth": "cyclegan", "pix2pix-pth": "pix2pix"}
#: The official one-way CycleGAN generators that have a published opposite.
OFFICIAL_REVERSE = {a: b for x, y in (
    ("horse2zebra", "zebra2horse"), ("summer2winter_yosemite", "winter2summer_yosemite"),
    ("apple2orange", "orange2apple"), ("map2sat", "sat2map"), ("monet2photo", "style_monet"),
    ("cityscapes_photo2label", "cityscapes_label2photo"), ("facades_photo2label", "facades_label2photo"),
) for a, b in ((x, y), (y, x))}
_LEGACY_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
_RESNET_KEY = re.compile(r"^model\.(\d+)\.")
_BLOCK_KEY = re.compile(r"^model\.(\d+)\.conv_block\.(\d+)\.(\w+)$")


# --------------------------------------------------------------------------------------------
# Reading


def load_pth(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of an official ``.pth`` state dict (:func:`~gencli.convert.torchfile.load_torch_file`)."""
    from gencli.convert.torchfile import load_torch_file

    return load_torch_file(path)


# --------------------------------------------------------------------------------------------
# Inferring the architecture


def _fail(what: str, detail: str) -> InputError:
    return InputError(f"{what} is not an official ResnetGenerator/UnetGenerator state dict ({detail}); "
                      "convert a generator file such as latest_net_G.pth or NAME.pth")


def _has_norm_params(sd: Mapping[str, torch.Tensor], prefix: str) -> bool:
    return f"{prefix}.weight" in sd and sd[f"{prefix}.weight"].dim() == 1


def _is_conv(sd: Mapping[str, torch.Tensor], prefix: str) -> bool:
    w = sd.get(f"{prefix}.weight")
    return w is not None and w.dim() == 4


def infer_generator_config(sd: Mapping[str, torch.Tensor], what: str = "the state dict",
                           dropout: bool | None = None) -> dict[str, Any]:
    """The gencli generator config (see networks.generator_config) of an official state dict."""
    if _is_conv(sd, "model.model.0"):
        return _infer_unet(sd, what, dropout)
    if _is_conv(sd, "model.1"):
        return _infer_resnet(sd, what, dropout)
    if _is_conv(sd, "model.0") or _is_conv(sd, "net.0"):
        raise InputError(f"{what} looks like a discriminator (net_D), not a generator; "
                         "convert the generator file (latest_net_G*.pth or NAME.pth)")
    raise _fail(what, f"no model.1 or model.model.0 convolution; first key {next(iter(sd), None)!r}")


def _infer_resnet(sd: Mapping[str, torch.Tensor], what: str, dropout: bool | None) -> dict[str, Any]:
    first = sd["model.1.weight"]
    ngf, input_nc = int(first.shape[0]), int(first.shape[1])
    blocks: dict[int, set[int]] = {}
    for k, v in sd.items():
        m = _BLOCK_KEY.match(k)
        if m and m.group(3) == "weight" and v.dim() == 4:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    n_blocks = len(blocks)
    if sorted(blocks) != list(range(10, 10 + n_blocks)):
        raise _fail(what, f"residual blocks at model.{sorted(blocks)} instead of model.10 onwards")
    layouts = {frozenset({1, 5}): ("reflect", False), frozenset({1, 6}): ("reflect", True),
               frozenset({0, 3}): ("zero", False), frozenset({0, 4}): ("zero", True)}
    kinds = {layouts.get(frozenset(v)) for v in blocks.values()}
    if None in kinds or len(kinds) > 1:
        raise _fail(what, f"unexpected residual block layout conv_block.{sorted(next(iter(blocks.values())))}")
    padding_type, has_dropout = kinds.pop() if kinds else ("reflect", bool(dropout))
    if dropout is not None and n_blocks and dropout != has_dropout:
        raise UsageError(f"{what}: its residual blocks are laid out {'with' if has_dropout else 'without'} "
                         f"dropout (conv_block.{'6' if has_dropout else '5'}), which contradicts dropout={dropout}")
    last = 10 + n_blocks + 7
    if not _is_conv(sd, f"model.{last}"):
        raise _fail(what, f"no final convolution model.{last} for {n_blocks} blocks")
    norm = "instance" if "model.1.bias" in sd else "batch"
    if norm == "batch" and not _has_norm_params(sd, "model.2"):
        raise _fail(what, "convolutions without bias but no batch-norm parameters at model.2")
    return {"arch": "resnet", "input_nc": input_nc, "output_nc": int(sd[f"model.{last}.weight"].shape[0]),
            "ngf": ngf, "norm": norm, "dropout": has_dropout, "n_blocks": n_blocks,
            "padding_type": padding_type}


def _infer_unet(sd: Mapping[str, torch.Tensor], what: str, dropout: bool | None) -> dict[str, Any]:
    first = sd["model.model.0.weight"]
    ngf, input_nc = int(first.shape[0]), int(first.shape[1])
    if not _is_conv(sd, "model.model.3"):
        raise _fail(what, "no outermost up-convolution model.model.3")
    output_nc = int(sd["model.model.3.weight"].shape[1])
    depth, prefix = 1, "model.model.1."
    while _is_conv(sd, prefix + "model.1"):
        depth += 1
        if _is_conv(sd, prefix + "model.3.model.1"):
            prefix += "model.3."
        else:
            break
    if depth < 5:
        raise _fail(what, f"U-Net of depth {depth} (the official ones have at least 5 levels)")
    norm = "instance" if "model.model.0.bias" in sd else "batch"
    if norm == "batch" and not _has_norm_params(sd, "model.model.1.model.2"):
        raise _fail(what, "convolutions without bias but no batch-norm parameters")
    return {"arch": "unet", "input_nc": input_nc, "output_nc": output_nc, "ngf": ngf, "norm": norm,
            "dropout": True if dropout is None else bool(dropout), "num_downs": depth}


# --------------------------------------------------------------------------------------------
# Cleaning and checking


def clean_state_dict(sd: Mapping[str, torch.Tensor], gen_cfg: Mapping[str, Any],
                     what: str = "the state dict") -> tuple[dict[str, torch.Tensor], list[str]]:
    """Fit an official state dict to the gencli generator of ``gen_cfg``: (tensors, dropped keys).

    Drops InstanceNorm running statistics / ``num_batches_tracked`` (legacy files), adds a zero
    ``num_batches_tracked`` to BatchNorm layers that lack one, and checks the rest strictly.
    """
    from gencli.models.translation.networks import build_generator

    with torch.device("meta"):
        net = build_generator(dict(gen_cfg))
    expected = net.state_dict()
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for k, v in sd.items():
        if k in expected:
            out[k] = v
        elif k.endswith(_LEGACY_SUFFIXES):
            dropped.append(k)
        else:
            raise _fail(what, f"unexpected key {k!r} for the inferred {describe(gen_cfg)}")
    for k, v in expected.items():
        if k not in out:
            if k.endswith("num_batches_tracked"):
                out[k] = torch.zeros((), dtype=torch.long)
            else:
                raise _fail(what, f"missing key {k!r} for the inferred {describe(gen_cfg)}")
        elif tuple(out[k].shape) != tuple(v.shape):
            raise _fail(what, f"{k} has shape {tuple(out[k].shape)}, expected {tuple(v.shape)} "
                              f"for the inferred {describe(gen_cfg)}")
        if out[k].is_floating_point():
            out[k] = out[k].to(torch.float32)
    return {k: out[k].contiguous() for k in expected}, dropped


def describe(gen_cfg: Mapping[str, Any]) -> str:
    """A short human name of a generator config, e.g. 'resnet_9blocks (ngf 64, instance norm)'."""
    if gen_cfg["arch"] == "resnet":
        name = f"resnet_{gen_cfg['n_blocks']}blocks"
    else:
        name = f"unet_{2 ** gen_cfg['num_downs']}"
    extra = ", dropout" if gen_cfg.get("dropout") else ""
    return f"{name} (ngf {gen_cfg['ngf']}, {gen_cfg['norm']} norm{extra}, {gen_cfg['input_nc']}->{gen_cfg['output_nc']} channels)"


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


# --------------------------------------------------------------------------------------------
# The official download site, converted once into the cache


def converted_path(family: str, name: str) -> Path:
    from gencli.paths import cache_dir

    return cache_dir() / "converted" / family / f"{name}.safetensors"


#: Environment variable naming a mirror of the official download site (same paths below it).
MIRROR_ENV = "GENCLI_CYCLEGAN_MIRROR"


def official_url(url: str) -> str:
    """``url`` on the mirror named by ``$GENCLI_CYCLEGAN_MIRROR`` when set (keeps the path)."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    from urllib.parse import urlsplit

    return mirror.rstrip("/") + urlsplit(url).path


def resolve_official(family: str, ref: Any, *, allow_download: bool = True) -> Path:
    """Local gencli checkpoint for a registry ``CheckpointRef`` whose source is an official ``.pth`` URL.

    A file converted earlier is returned at once (no request). Otherwise the ``.pth`` is
    downloaded into the cache (sha256-verified when the registry pins one), converted into
    ``cache_dir()/converted/<family>/<name>.safetensors``, and removed; a note says so.
    """
    from gencli.checkpoints import read_metadata, save_checkpoint
    from gencli.hub.urls import download_url
    from gencli.paths import download_path

    family = FORMATS.get(ref.format, family)
    dest = converted_path(family, ref.name)
    url = official_url(ref.source.partition(":")[2])
    if dest.is_file():
        try:
            if read_metadata(dest).get("family") == family:
                return dest
        except InputError:
            pass  # damaged: convert again
    if not allow_download:
        raise WeightsNotFound(f"{family} {ref.name} is not in the cache ({dest}) and downloads are off; "
                              f"run once online, or download {url} yourself and "
                              f"`gencli convert {family} FILE.pth -o {dest}`")
    download = download_path(family, url)
    pth = download_url(url, download, sha256=ref.sha256, desc=f"{family} {ref.name}")
    try:
        _, tensors, meta = official_to_gencli(
            pth, family, name=ref.name,
            extra_metadata={"source": url, "description": ref.description, "dataset": ref.dataset or ref.name})
    except InputError as e:
        pth.unlink(missing_ok=True)
        raise InputError(f"the file downloaded from {url} is not a usable {family} generator ({e}); "
                         "it was removed from the cache") from None
    save_checkpoint(dest, tensors, meta, force=True)
    pth.unlink(missing_ok=True)
    pin = "" if ref.sha256 else f" (not pinned yet: sha256 {meta['source_sha256'][0]})"
    warnings.warn(f"downloaded {url}{pin} and converted it once into {dest}", stacklevel=2)
    return dest


def load_official(path: str | os.PathLike[str], family: str
                  ) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """For ``--weights FILE.pth``: convert in memory (nothing is written)."""
    config, tensors, meta = official_to_gencli(path, family)
    meta.setdefault("source", str(path))
    return config, tensors, meta


__all__ = [
    "FORMATS", "MIRROR_ENV", "official_url", "load_pth", "infer_generator_config", "clean_state_dict", "describe",
    "official_to_gencli", "convert_file", "convert_cyclegan", "convert_pix2pix", "is_official_pth", "converted_path", "resolve_official",
    "load_official",
]
