"""``vqvae``: VQ-VAE (van den Oord et al. 2017) with a gated PixelCNN prior over its code grid.

Stage 1: encoder -> nearest of K codebook vectors (straight-through gradient to the encoder) ->
decoder; loss = MSE reconstruction + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2 (beta 0.25). With
``ema`` the codebook is instead an exponential moving average of the encodings assigned to each
code (decay 0.99, eps 1e-5) and codes whose EMA count falls below ``restart_below`` are restarted
at random encodings of the batch (dead-code restarts, as encodec's ``core_vq.py``).
Stage 2: a gated PixelCNN (gencli.models.autoregressive.gated) models p(codes) on the (detached)
codes of the current encoder, trained in the same steps from ``prior_start`` on. `gencli sample
vqvae` draws a code grid from the prior, position by position, and decodes it: DALL-E's two stages
in miniature. ``translate`` reconstructs images through the codebook.

``quantizer: gumbel`` replaces the nearest-neighbour step by DALL-E's dVAE relaxation (Ramesh et
al. 2021, App. A.2): the encoder gives K logits per position, training uses the Gumbel-softmax
mixture of codebook vectors (relaxed in the forward and backward pass) with a temperature annealed
(cosine) from ``tau_start`` to ``tau_end`` over ``tau_steps`` and a KL to the uniform prior over
codes; at test time the code is the argmax.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gencli.errors import InputError
from gencli.models.configs import merge
from gencli.models.autoregressive.gated import GatedPixelCNN
from gencli.models.base import GenerativeModel, Progress

DEFAULT_CONFIG: dict[str, Any] = {
    "hidden": [32, 64],
    "res_blocks": 1,
    "codebook_size": 128,
    "code_dim": 16,
    "beta": 0.25,
    "quantizer": "vq",         # vq | gumbel (DALL-E's dVAE relaxation)
    "gumbel": {"tau_start": 1.0, "tau_end": 0.0625, "tau_steps": 2000, "kl_weight": 0.01},
    "ema": True,
    "ema_decay": 0.99,
    "restart_below": 1.0,
    "prior": {"hidden": 48, "layers": 5, "kernel": 3, "first_kernel": 3, "head": 128, "embed": 16},
    "prior_start": 0,
    "optimizer": {"lr": 1e-3, "prior_lr": 1e-3, "betas": [0.9, 0.999]},
    "sampling": {"temperature": 1.0},
}


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.block = nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class Quantizer(nn.Module):
    """Nearest-codebook quantisation with a straight-through gradient."""

    def __init__(self, k: int, d: int, ema: bool, decay: float, restart_below: float):
        super().__init__()
        self.k, self.d, self.ema, self.decay, self.restart_below = k, d, ema, decay, restart_below
        self.codebook = nn.Parameter(torch.randn(k, d) * 0.1 if not ema else torch.randn(k, d) * 0.1,
                                     requires_grad=not ema)
        if ema:
            self.register_buffer("ema_count", torch.ones(k))
            self.register_buffer("ema_sum", self.codebook.detach().clone())

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest code index of every vector of z (N, D, H, W) -> (N, H, W)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.d)
        dist = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t()
                + self.codebook.pow(2).sum(1)[None])
        return dist.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return self.codebook[codes].permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(straight-through quantised z, codes, codebook+commitment loss without beta split:
        returns (z_q_st, codes, (codebook_loss, commitment_loss)))."""
        codes = self.codes(z.detach())
        zq = self.lookup(codes)
        commitment = F.mse_loss(z, zq.detach())
        codebook_loss = z.new_zeros(()) if self.ema else F.mse_loss(zq, z.detach())
        if self.ema and self.training:
            self._ema_update(z.detach(), codes)
            zq = self.lookup(codes)
        return z + (zq - z).detach(), codes, torch.stack([codebook_loss, commitment])

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.d).float()
        onehot = F.one_hot(codes.flatten(), self.k).float()
        self.ema_count.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        n = self.ema_count.sum()
        count = (self.ema_count + 1e-5) / (n + self.k * 1e-5) * n  # Laplace smoothing
        self.codebook.data.copy_(self.ema_sum / count[:, None])
        dead = self.ema_count < self.restart_below
        if bool(dead.any()):
            pick = torch.randint(flat.shape[0], (int(dead.sum()),), device=flat.device)
            self.codebook.data[dead] = flat[pick]
            self.ema_sum[dead] = flat[pick]
            self.ema_count[dead] = 1.0


class GumbelQuantizer(nn.Module):
    """dVAE relaxation: K logits per position -> soft (training) or hard (test) codebook mixture."""

    def __init__(self, k: int, d: int):
        super().__init__()
        self.k, self.d = k, d
        self.codebook = nn.Parameter(torch.randn(k, d) * 0.1)

    def codes(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return self.codebook[codes].permute(0, 3, 1, 2)

    def forward(self, logits: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(relaxed z, hard codes, KL(q || uniform) per position, mean)."""
        soft = F.gumbel_softmax(logits, tau=tau, hard=False, dim=1)
        z = torch.einsum("nkhw,kd->ndhw", soft, self.codebook)
        logq = F.log_softmax(logits, 1)
        kl = (logq.exp() * (logq + math.log(self.k))).sum(1).mean()
        return z, logits.argmax(1), kl


class VQVAE(GenerativeModel):
    family = "vqvae"
    train_defaults = {"ema_decay": 0.0, "batch_size": 64, "grad_clip": 5.0}

    def __init__(self, config: dict[str, Any]):
        super().__init__(merge(DEFAULT_CONFIG, config))
        cfg = self.config
        c, hidden = self.channels, [int(h) for h in cfg["hidden"]]
        if self.image_size % 2 ** len(hidden):
            raise ValueError(f"image_size must be divisible by {2 ** len(hidden)}")
        d, k = int(cfg["code_dim"]), int(cfg["codebook_size"])
        enc: list[nn.Module] = []
        cin = c
        for i, h in enumerate(hidden):
            enc += [nn.Conv2d(cin, h, 4, 2, 1)] + ([nn.ReLU()] if i + 1 < len(hidden) else [])
            cin = h
        self.gumbel = cfg["quantizer"] == "gumbel"
        if cfg["quantizer"] not in ("vq", "gumbel"):
            raise ValueError(f"quantizer must be vq or gumbel, got {cfg['quantizer']!r}")
        enc += [_Res(cin) for _ in range(int(cfg["res_blocks"]))] + [nn.ReLU(), nn.Conv2d(cin, k if self.gumbel else d, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(d, cin, 3, padding=1)] + [_Res(cin) for _ in range(int(cfg["res_blocks"]))]
        rev = hidden[::-1]
        for i, h in enumerate(rev):
            nxt = rev[i + 1] if i + 1 < len(rev) else c
            dec += [nn.ReLU(), nn.ConvTranspose2d(h, nxt, 4, 2, 1)]
        self.decoder = nn.Sequential(*dec)
        self.quantizer = (GumbelQuantizer(k, d) if self.gumbel else
                          Quantizer(k, d, bool(cfg["ema"]), float(cfg["ema_decay"]), float(cfg["restart_below"])))
        p = cfg["prior"]
        self.code_embed = nn.Embedding(k, int(p["embed"]))
        self.prior_net = GatedPixelCNN(int(p["embed"]), k, int(p["hidden"]), int(p["layers"]), int(p["kernel"]),
                                       int(p["first_kernel"]), int(p["head"]), cfg.get("num_classes"))
        self.grid = self.image_size // 2 ** len(hidden)

    @classmethod
    def config_for_data(cls, image_size: int, channels: int, num_classes: int | None,
                        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg = merge(DEFAULT_CONFIG, overrides)
        cfg.update(image_size=image_size, channels=channels, num_classes=num_classes or None)
        return cfg

    def _stage1(self) -> list[nn.Parameter]:
        return [p for m in (self.encoder, self.decoder, self.quantizer) for p in m.parameters() if p.requires_grad]

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        o = self.config["optimizer"]
        prior = list(self.code_embed.parameters()) + list(self.prior_net.parameters())
        return {"vqvae": torch.optim.Adam(self._stage1(), lr=o["lr"], betas=tuple(o["betas"])),
                "prior": torch.optim.Adam(prior, lr=o.get("prior_lr", o["lr"]), betas=tuple(o["betas"]))}

    def tau(self, step: int) -> float:
        """The Gumbel-softmax temperature at ``step`` (cosine from tau_start to tau_end)."""
        g = self.config["gumbel"]
        frac = min(1.0, step / max(1, int(g["tau_steps"])))
        return float(g["tau_end"] + 0.5 * (g["tau_start"] - g["tau_end"]) * (1 + math.cos(math.pi * frac)))

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        expected = (self.channels, self.image_size, self.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise InputError(f"vqvae takes images of shape (N, {', '.join(map(str, expected))}), "
                             f"got {tuple(images.shape)}")
        return images.to(self.device, torch.float32)

    def prior_logits(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """(N, K, h, w) logits of p(code_i | codes_<i) from the prior."""
        return self.prior_net(self.code_embed(codes).permute(0, 3, 1, 2), labels)

    def train_step(self, batch, step, ctx):
        x, y = batch
        with ctx.autocast():
            z = self.encoder(x)
            if self.gumbel:
                zq, codes, kl = self.quantizer(z.float(), self.tau(step))
            else:
                zq, codes, (cb, commit) = self.quantizer(z.float())
            rec = self.decoder(zq)
        recon = F.mse_loss(rec.float(), x)
        if self.gumbel:
            loss = recon + float(self.config["gumbel"]["kl_weight"]) * kl
        else:
            loss = recon + cb + float(self.config["beta"]) * commit
        ctx.step(loss, "vqvae")
        out = {"loss": loss.detach(), "recon_mse": recon.detach(),
               "codes_used": torch.tensor(float(codes.unique().numel()))}
        if step >= int(self.config.get("prior_start", 0)):
            labels = y.clamp(min=0) if self.num_classes else None
            with ctx.autocast():
                logits = self.prior_logits(codes.detach(), labels)
            prior_loss = F.cross_entropy(logits.float(), codes.detach())
            ctx.step(prior_loss, "prior")
            out["prior_nats"] = prior_loss.detach()
        return out

    @torch.inference_mode()
    def translate(self, images: torch.Tensor, generator: torch.Generator | None = None, **opts: Any) -> torch.Tensor:
        """Reconstruction through the codebook."""
        zq = self.quantizer.lookup(self.quantizer.codes(self.encoder(self._check(images))))
        return self.decoder(zq).clamp(-1, 1)

    @torch.inference_mode()
    def sample(self, n: int, generator: torch.Generator | None = None, *, temperature: float | None = None,
               class_labels: Any = None, progress: Progress | None = None, **_: Any) -> torch.Tensor:
        """Codes drawn from the prior position by position (the network run only on the rows that
        can change the next code), decoded."""
        t = float(self.config["sampling"]["temperature"] if temperature is None else temperature)
        labels = self.class_labels(n, class_labels) if self.num_classes else None
        g = self.grid
        codes = torch.zeros((n, g, g), dtype=torch.long, device=self.device)
        up = self.prior_net.rows_above()
        for i in range(g):
            top = max(0, i - up)
            for j in range(g):
                logits = self.prior_logits(codes[:, top:i + 1], labels)[:, :, i - top, j].float()
                probs = F.softmax(logits / max(t, 1e-4), -1)
                codes[:, i, j] = torch.multinomial(probs, 1, generator=generator)[:, 0]
                if progress is not None:
                    progress(i * g + j + 1, g * g)
        return self.decoder(self.quantizer.lookup(codes)).clamp(-1, 1)
