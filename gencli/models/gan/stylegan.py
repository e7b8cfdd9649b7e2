"""A compact style-based generator (after Karras et al. 2019/2020; written here, not a port).

- Mapping network z -> w: z normalised to unit second moment, ``mapping_layers`` equalised-lr
  linear layers (lr multiplier 0.01) with LeakyReLU 0.2. The mean w is tracked during training
  (``w_avg``, EMA beta 0.995) for the truncation trick: w' = w_avg + psi (w - w_avg) on the first
  ``cutoff`` styles (all by default).
- Synthesis: a learned constant ``base x base`` input (base as the DCGAN layout: 7 for 28 px, 4
  for 32/64 px), one modulated 3x3 convolution there, then per doubling a nearest x2 upsample and
  two modulated convolutions, and a modulated 1x1 ToRGB (not demodulated). Each convolution's
  weight is scaled per sample by an affine map of its style (bias init 1) and demodulated
  (w'' = s w / sqrt(sum (s w)^2 + 1e-8)); per-layer noise (one channel, a learned strength
  starting at 0) and a bias follow, then LeakyReLU 0.2 (x sqrt 2). Weights are N(0, 1) scaled by
  1/sqrt(fan_in) at run time (equalised learning rate).
- Style mixing regularisation: in training, with probability ``style_mixing`` (0.9) per sample two
  z's are mapped and the styles switch from one to the other at a random layer.
- Training: non-saturating logistic loss, R1 penalty on reals (gamma/2 ||grad||^2, ``r1_gamma``),
  Adam (0, 0.99), EMA of G (the trainer's, decay 0.999 by default for this family), a plain
  DCGAN-layout discriminator without norm.

Styles are indexed 0..num_ws-1 from the coarsest layer to ToRGB; ``--mix-layers`` coarse / middle
/ fine take the first / middle / last third of them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gencli.errors import UsageError
from gencli.models.base import generator_device, randn
from gencli.models.gan.adversarial import AdversarialModel
from gencli.models.gan.networks import conv_layout

MIX_LAYERS = ("coarse", "middle", "fine")


class EqualLinear(nn.Module):
    def __init__(self, d_in: int, d_out: int, *, lr_mult: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_out, d_in) / lr_mult)
        self.bias = nn.Parameter(torch.full((d_out,), float(bias_init)))
        self.w_gain = lr_mult / math.sqrt(d_in)
        self.lr_mult = lr_mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.w_gain, self.bias * self.lr_mult)


class ModConv(nn.Module):
    """Modulated (and optionally demodulated) convolution, with noise, bias and activation."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, k: int = 3, *, demod: bool = True, act: bool = True,
                 noise: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.bias = nn.Parameter(torch.zeros(c_out))
        if noise:
            self.noise_strength = nn.Parameter(torch.zeros(()))
        self.demod, self.act, self.k = demod, act, k

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_gen: torch.Generator | None = None,
                shared_noise: bool = False, rng: Any = None) -> torch.Tensor:
        b, c, h, wd = x.shape
        s = self.affine(w)  # (B, c_in)
        weight = self.weight[None] * (1 / math.sqrt(c * self.k * self.k)) * s[:, None, :, None, None]
        if self.demod:
            weight = weight * torch.rsqrt(weight.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8)
        out = F.conv2d(x.reshape(1, b * c, h, wd), weight.reshape(-1, c, self.k, self.k),
                       padding=self.k // 2, groups=b).reshape(b, -1, h, wd)
        if hasattr(self, "noise_strength"):
            if rng is not None:  # training: the step context's draws
                noise = rng.randn(b, 1, h, wd).to(out)
            else:
                dev = generator_device(noise_gen, x.device)
                noise = randn((1 if shared_noise else b, 1, h, wd), noise_gen, dev).to(out)
            out = out + self.noise_strength * noise
        out = out + self.bias[None, :, None, None]
        return F.leaky_relu(out, 0.2) * math.sqrt(2) if self.act else out


class StyleGenerator(nn.Module):
    def __init__(self, cfg: dict[str, Any], out_shape: tuple[int, ...], z_dim: int, num_classes: int | None = None):
        super().__init__()
        if num_classes:
            raise UsageError("this compact stylegan is unconditional: train it with --unconditional")
        c_out, size = int(out_shape[0]), int(out_shape[1])
        self.z_dim, w_dim = int(z_dim), int(cfg.get("w_dim", 64))
        self.w_avg_beta = float(cfg.get("w_avg_beta", 0.995))
        self.style_mixing = float(cfg.get("style_mixing", 0.9))
        width = int(cfg.get("width", 64))
        layers = []
        d = self.z_dim
        for _ in range(int(cfg.get("mapping_layers", 2))):
            layers += [EqualLinear(d, w_dim, lr_mult=0.01), nn.LeakyReLU(0.2)]
            d = w_dim
        self.mapping = nn.Sequential(*layers)
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.base, k = conv_layout(size)
        self.const = nn.Parameter(torch.randn(width, self.base, self.base))
        self.convs = nn.ModuleList([ModConv(width, width, w_dim)])
        self.ups = [False]
        for _ in range(k):
            self.convs.append(ModConv(width, width, w_dim))
            self.convs.append(ModConv(width, width, w_dim))
            self.ups += [True, False]
        self.to_rgb = ModConv(width, c_out, w_dim, k=1, demod=False, act=False, noise=False)
        self.num_ws = len(self.convs) + 1

    def map(self, z: torch.Tensor) -> torch.Tensor:
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        return self.mapping(z)

    def truncate(self, w: torch.Tensor, psi: float | None, cutoff: int | None = None) -> torch.Tensor:
        """ws (B, num_ws, w_dim) moved towards w_avg by psi on the first ``cutoff`` styles."""
        if psi is None or psi == 1:
            return w
        t = self.w_avg.lerp(w, float(psi))
        if cutoff is None:
            return t
        return torch.cat([t[:, :cutoff], w[:, cutoff:]], dim=1)

    def synthesis(self, ws: torch.Tensor, noise_gen: torch.Generator | None = None,
                  shared_noise: bool = False, rng: Any = None) -> torch.Tensor:
        """Images of styles ``ws`` (B, num_ws, w_dim); ``shared_noise``: one noise draw for all;
        ``rng`` (training): the per-layer noise from a step context."""
        x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        for i, (conv, up) in enumerate(zip(self.convs, self.ups)):
            if up:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = conv(x, ws[:, i], noise_gen, shared_noise, rng)
        return torch.tanh(self.to_rgb(x, ws[:, -1]))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, *, z2: torch.Tensor | None = None,
                cut: torch.Tensor | None = None, rng: Any = None) -> torch.Tensor:
        """Images of ``z``; with ``z2`` and ``cut`` (N,) (style mixing), sample i takes the styles
        from ``cut[i]`` on from ``z2[i]`` (``cut[i] = num_ws``: no mixing); the layer noise from
        ``rng`` when given. In training mode the mean w is tracked (from this process's batch)."""
        w = self.map(z)
        ws = w[:, None].repeat(1, self.num_ws, 1)
        if self.training:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        if z2 is not None and cut is not None:
            later = torch.arange(self.num_ws, device=ws.device)[None, :] >= cut.to(ws.device)[:, None]
            ws = torch.where(later[..., None], self.map(z2)[:, None], ws)
        return self.synthesis(ws, rng=rng)


class StyleGAN(AdversarialModel):
    family = "stylegan"
    DEFAULTS = {"z_dim": 64, "loss": "vanilla", "penalty": "r1", "penalty_weight": 1.0,
                "generator": {"arch": "style", "width": 64, "w_dim": 64, "mapping_layers": 2,
                              "style_mixing": 0.9, "w_avg_beta": 0.995},
                "discriminator": {"norm": "none"},
                "optimizer": {"lr": 2e-3, "betas": [0.0, 0.99]}}
    train_defaults = {**AdversarialModel.train_defaults, "ema_decay": 0.999}

    def build_generator(self, cfg: dict[str, Any], num_classes: int | None) -> nn.Module:
        return StyleGenerator(cfg["generator"], self.data_shape, int(cfg["z_dim"]), num_classes)

    def fakes(self, z: torch.Tensor, labels: torch.Tensor | None, rng: Any) -> torch.Tensor:
        """Style mixing regularisation: with probability ``style_mixing`` per sample, the styles
        switch to a second z's at a random layer (drawn per sample from ``rng``, so a batch split
        over ranks mixes as the whole batch would)."""
        p = self.G.style_mixing
        if p <= 0:
            return self.G(z, labels, rng=rng)
        n, num_ws = z.shape[0], self.G.num_ws
        cut = rng.randint(1, num_ws, (n,))
        cut = torch.where(rng.rand(n) < p, cut, torch.full_like(cut, num_ws))
        return self.G(z, labels, z2=rng.randn(*z.shape).to(z), cut=cut, rng=rng)

    def _ws(self, z: torch.Tensor, truncation: float | None = None) -> torch.Tensor:
        w = self.G.map(z.to(self.device))
        return self.G.truncate(w[:, None].repeat(1, self.G.num_ws, 1), truncation)

    def prior(self, n: int, generator: torch.Generator | None = None, *, truncation: float | None = None
              ) -> torch.Tensor:
        return randn((n, int(self.config["z_dim"])), generator, generator_device(generator, self.device))

    def decode(self, latents: torch.Tensor, *, class_labels: Any = None, truncation: float | None = None,
               noise_gen: torch.Generator | None = None, **opts: Any) -> torch.Tensor:
        self.class_labels(latents.shape[0], class_labels)
        if noise_gen is None:  # one fixed noise for every image: interpolation frames stay smooth
            return self.G.synthesis(self._ws(latents, truncation), self.fixed_noise(), shared_noise=True)
        return self.G.synthesis(self._ws(latents, truncation), noise_gen)

    def fixed_noise(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(0)

    @torch.inference_mode()
    def sample(self, n: int, generator: torch.Generator | None = None, *, class_labels: Any = None,
               truncation: float | None = None, mix: str | None = None, mix_layers: str = "coarse",
               progress: Any = None, **opts: Any) -> torch.Tensor:
        if mix:
            x = self.mixing_grid(mix, mix_layers, truncation=truncation)
        else:
            z = self.prior(n, generator)
            x = self.decode(z, class_labels=class_labels, truncation=truncation, noise_gen=generator)
        if progress is not None:
            progress(1, 1)
        return x

    def _seed_z(self, seeds: list[int]) -> torch.Tensor:
        return torch.cat([self.prior(1, torch.Generator(device=self.device).manual_seed(s)) for s in seeds])

    def _seed_ws(self, seeds: list[int], truncation: float | None) -> torch.Tensor:
        return self._ws(self._seed_z(seeds), truncation)

    def mixing_grid(self, spec: str, layers: str = "coarse", *, truncation: float | None = None) -> torch.Tensor:
        """(rows + 1, cols + 1, C, H, W): the StyleGAN figure 3 layout. Column seeds' images across
        the top, row seeds' images down the left, and at (i, j) row seed i's styles with the
        ``layers`` third of them taken from column seed j. The top-left cell is blank."""
        rows, cols = parse_mix(spec)
        if layers not in MIX_LAYERS:
            raise UsageError(f"--mix-layers must be one of {', '.join(MIX_LAYERS)}, got {layers!r}")
        lo, hi = mix_range(self.G.num_ws, layers)
        wr, wc = self._seed_ws(rows, truncation), self._seed_ws(cols, truncation)
        mixed = wr[:, None].repeat(1, len(cols), 1, 1)
        mixed[:, :, lo:hi] = wc[None, :, lo:hi]
        top = self.G.synthesis(wc, self.fixed_noise(), shared_noise=True)  # the same noise everywhere
        left = self.G.synthesis(wr, self.fixed_noise(), shared_noise=True)
        inner = self.G.synthesis(mixed.flatten(0, 1), self.fixed_noise(), shared_noise=True)
        inner = inner.view(len(rows), len(cols), *top.shape[1:])
        blank = torch.ones_like(top[:1])
        first = torch.cat([blank, top])[None]
        body = torch.cat([left[:, None], inner], dim=1)
        return torch.cat([first, body])

    @torch.inference_mode()
    def interpolate(self, frames: int, generators: list[torch.Generator], *, class_labels: Any = None,
                    space: str = "z", truncation: float | None = None, arithmetic: str | None = None,
                    progress: Any = None, **opts: Any) -> torch.Tensor:
        """Slerp in z (the default), or lerp in w (``space="w"``), between the seeds' latents."""
        if arithmetic:
            return self.latent_arithmetic(arithmetic, class_labels=class_labels)
        if space == "z":
            return super().interpolate(frames, generators, class_labels=class_labels, truncation=truncation)
        if space != "w":
            raise UsageError(f"--space must be z or w, got {space!r}")
        if len(generators) < 2 or frames < 2:
            raise UsageError("an interpolation needs at least two seeds and 2 frames")
        ws = self._ws(torch.cat([self.prior(1, g) for g in generators]), truncation)[:, 0]
        pos = torch.linspace(0, len(ws) - 1, frames, dtype=torch.float64)
        seg = pos.floor().long().clamp(max=len(ws) - 2)
        w = torch.stack([ws[int(k)].lerp(ws[int(k) + 1], float(p - k)) for p, k in zip(pos, seg)])
        return self.G.synthesis(w[:, None].repeat(1, self.G.num_ws, 1), self.fixed_noise(), shared_noise=True)


def mix_range(num_ws: int, layers: str) -> tuple[int, int]:
    """[lo, hi) of the styles in the coarse / middle / fine third."""
    a, b = round(num_ws / 3), round(2 * num_ws / 3)
    return {"coarse": (0, a), "middle": (a, b), "fine": (b, num_ws)}[layers]


def parse_mix(spec: str) -> tuple[list[int], list[int]]:
    """"1,2,3:4,5" -> ([1, 2, 3], [4, 5])."""
    try:
        left, right = spec.split(":")
        rows = [int(s) for s in left.split(",") if s.strip()]
        cols = [int(s) for s in right.split(",") if s.strip()]
    except ValueError:
        rows = cols = []
    if not rows or not cols or any(s < 0 for s in rows + cols):
        raise UsageError(f"--mix {spec!r}: write ROWSEEDS:COLSEEDS, e.g. 1,2,3:4,5,6")
    return rows, cols
