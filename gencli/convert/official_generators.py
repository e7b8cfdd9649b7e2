"""Official pytorch-CycleGAN-and-pix2pix generator state dicts: their architecture inferred from
keys and shapes (ResnetGenerator or UnetGenerator), and the tensors fitted to gencli's generator.
See :mod:`gencli.convert.official_cyclegan` for the rules."""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from gencli.errors import InputError, UsageError

__all__ = ["infer_generator_config", "clean_state_dict", "describe"]

_LEGACY_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
_RESNET_KEY = re.compile(r"^model\.(\d+)\.")
_BLOCK_KEY = re.compile(r"^model\.(\d+)\.conv_block\.(\d+)\.(\w+)$")


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
