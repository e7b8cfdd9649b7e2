"""Official pytorch-CycleGAN-and-pix2pix generator state dicts with random weights, shared by the
translation, hub and formats tests."""

from __future__ import annotations

import torch

def _rand(g, *shape, std=0.1):
    return torch.randn(*shape, generator=g) * std


def _norm_entries(sd, key, c, norm, g, legacy):
    """Norm layer `key`: BatchNorm params + stats, or (instance norm) nothing / legacy stats."""
    if norm == "batch":
        sd[f"{key}.weight"] = 1 + _rand(g, c)
        sd[f"{key}.bias"] = _rand(g, c)
        sd[f"{key}.running_mean"] = _rand(g, c)
        sd[f"{key}.running_var"] = 0.5 + torch.rand(c, generator=g)
        sd[f"{key}.num_batches_tracked"] = torch.tensor(7)
    elif legacy:
        sd[f"{key}.running_mean"] = torch.zeros(c)
        sd[f"{key}.running_var"] = torch.ones(c)
        if legacy == "0.4":
            sd[f"{key}.num_batches_tracked"] = torch.tensor(0)


def official_resnet_sd(ngf=8, n_blocks=9, in_nc=3, out_nc=3, norm="instance", dropout=False,
                       legacy=None, seed=0, padding="reflect"):
    """ResnetBlock.build_conv_block: reflect = [pad, conv, norm, ReLU, (Dropout), pad, conv, norm]
    (convs at 1 and 5, or 6 with dropout); zero = [conv(p=1), norm, ReLU, (Dropout), conv(p=1), norm]
    (convs at 0 and 3, or 4 with dropout)."""
    g = torch.Generator().manual_seed(seed)
    bias = norm == "instance"
    sd = {}

    def conv(key, cin, cout, k, transposed=False, with_bias=bias):
        sd[f"{key}.weight"] = _rand(g, *((cin, cout) if transposed else (cout, cin)), k, k)
        if with_bias:
            sd[f"{key}.bias"] = _rand(g, cout)

    conv("model.1", in_nc, ngf, 7)
    _norm_entries(sd, "model.2", ngf, norm, g, legacy)
    conv("model.4", ngf, 2 * ngf, 3)
    _norm_entries(sd, "model.5", 2 * ngf, norm, g, legacy)
    conv("model.7", 2 * ngf, 4 * ngf, 3)
    _norm_entries(sd, "model.8", 4 * ngf, norm, g, legacy)
    c1 = 1 if padding == "reflect" else 0
    c2 = c1 + (5 if dropout else 4) - (0 if padding == "reflect" else 1)
    for i in range(n_blocks):
        b = f"model.{10 + i}.conv_block"
        conv(f"{b}.{c1}", 4 * ngf, 4 * ngf, 3)
        _norm_entries(sd, f"{b}.{c1 + 1}", 4 * ngf, norm, g, legacy)
        conv(f"{b}.{c2}", 4 * ngf, 4 * ngf, 3)
        _norm_entries(sd, f"{b}.{c2 + 1}", 4 * ngf, norm, g, legacy)
    u = 10 + n_blocks
    conv(f"model.{u}", 4 * ngf, 2 * ngf, 3, transposed=True)
    _norm_entries(sd, f"model.{u + 1}", 2 * ngf, norm, g, legacy)
    conv(f"model.{u + 3}", 2 * ngf, ngf, 3, transposed=True)
    _norm_entries(sd, f"model.{u + 4}", ngf, norm, g, legacy)
    conv(f"model.{u + 7}", ngf, out_nc, 7, with_bias=True)
    return sd


def official_unet_sd(ngf=4, num_downs=6, in_nc=3, out_nc=3, norm="batch", legacy=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    bias = norm == "instance"
    sd = {}

    def conv(key, cin, cout, transposed=False, with_bias=bias):
        sd[f"{key}.weight"] = _rand(g, *((cin, cout) if transposed else (cout, cin)), 4, 4)
        if with_bias:
            sd[f"{key}.bias"] = _rand(g, cout)

    # (outer_nc, inner_nc) of each level, outermost first
    levels = [(out_nc, ngf), (ngf, 2 * ngf), (2 * ngf, 4 * ngf), (4 * ngf, 8 * ngf)]
    levels += [(8 * ngf, 8 * ngf)] * (num_downs - 4)
    prefix = "model.model."
    conv(prefix + "0", in_nc, ngf)
    conv(prefix + "3", 2 * ngf, out_nc, transposed=True, with_bias=True)
    prefix += "1.model."
    for depth, (outer, inner) in enumerate(levels[1:], start=1):
        conv(prefix + "1", outer, inner)
        if depth == num_downs - 1:  # innermost: down, up, upnorm
            conv(prefix + "3", inner, outer, transposed=True)
            _norm_entries(sd, prefix + "4", outer, norm, g, legacy)
            break
        _norm_entries(sd, prefix + "2", inner, norm, g, legacy)
        conv(prefix + "5", 2 * inner, outer, transposed=True)
        _norm_entries(sd, prefix + "6", outer, norm, g, legacy)
        prefix += "3.model."
    return sd


# ------------------------------------------------------------------------------------------
# Reference forward passes (functional, from the architecture description)
# ------------------------------------------------------------------------------------------
