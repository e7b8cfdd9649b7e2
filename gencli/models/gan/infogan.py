"""InfoGAN (Chen et al. 2016): latent codes whose mutual information with the image is maximised.

G's input is ``[z, c]``: noise z ~ U(-1, 1) (62 dims) and codes c, each categorical code one-hot
(one 10-way code by default) followed by continuous codes ~ U(-1, 1) (2 by default), in the
order of ``info.categorical`` then ``info.continuous`` (named c1, c2, ... in that order, as in the
paper). D's trunk feeds a ``q`` head predicting the codes of a fake: cross-entropy for the
categorical ones, and for the continuous ones a Gaussian with fixed std, i.e. mean squared error.
The mutual-information lower bound ``weight_cat * CE + weight_cont * MSE`` is minimised by G (in
its step) and by D's trunk + q head (in D's step, on the fakes). Defaults follow
openai/InfoGAN's MNIST launcher: G lr 1e-3, D 2e-4, Adam beta1 0.5; lambda_cont 0.1 as
PyTorch-GAN.

``gencli interpolate infogan --traverse-code c1`` writes one row per seed with the categorical code
c1 taking each of its values; ``--traverse-code c2`` sweeps the continuous code c2 over -2..2 in
``--frames`` steps (the paper's figure 2), the rest of each row's latent held fixed.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from gencli.errors import UsageError
from gencli.models.base import rand, randint
from gencli.models.gan.adversarial import AdversarialModel


class InfoGAN(AdversarialModel):
    family = "infogan"
    DEFAULTS = {"z_dim": 62, "z_dist": "uniform",
                "info": {"categorical": [10], "continuous": 2, "weight_cat": 1.0, "weight_cont": 0.1},
                "optimizer": {"lr": 1e-3, "lr_d": 2e-4, "betas": [0.5, 0.999]}}

    @property
    def _cats(self) -> list[int]:
        return [int(k) for k in self.config["info"]["categorical"]]

    @property
    def _cont(self) -> int:
        return int(self.config["info"]["continuous"])

    @property
    def latent_dim(self) -> int:
        return int(self.config["z_dim"]) + sum(self._cats) + self._cont

    @property
    def q_dim(self) -> int:
        return sum(self._cats) + self._cont

    def _codes(self, n: int, generator: torch.Generator | None, device: Any) -> tuple[list[torch.Tensor], torch.Tensor]:
        cats = [randint(k, (n,), generator, device) for k in self._cats]
        cont = rand((n, self._cont), generator, device) * 2 - 1
        return cats, cont

    def _latent(self, z: torch.Tensor, cats: list[torch.Tensor], cont: torch.Tensor) -> torch.Tensor:
        onehots = [F.one_hot(c, k).to(z.dtype) for c, k in zip(cats, self._cats)]
        return torch.cat([z, *onehots, cont.to(z.dtype)], dim=1)

    def training_latents(self, n: int, rng: Any):
        z = self._noise(n, rng)
        cats = [rng.randint(0, k, (n,)) for k in self._cats]
        cont = rng.rand(n, self._cont) * 2 - 1
        return self._latent(z, cats, cont), (cats, cont)

    def info_loss(self, feats: torch.Tensor, codes: Any) -> torch.Tensor | None:
        cats, cont = codes
        q = self.D.q(feats).float()
        info = self.config["info"]
        loss = q.new_zeros(())
        i = 0
        for c, k in zip(cats, self._cats):
            loss = loss + float(info["weight_cat"]) * F.cross_entropy(q[:, i:i + k], c)
            i += k
        if self._cont:
            loss = loss + float(info["weight_cont"]) * F.mse_loss(q[:, i:i + self._cont], cont.float())
        return loss

    def prior(self, n: int, generator: torch.Generator | None = None, *, truncation: float | None = None
              ) -> torch.Tensor:
        z = super().prior(n, generator, truncation=truncation)
        cats, cont = self._codes(n, generator, z.device)
        return self._latent(z, cats, cont)

    @torch.inference_mode()
    def interpolate(self, frames: int, generators: list[torch.Generator], *, class_labels: Any = None,
                    traverse_code: str | None = None, **opts: Any) -> torch.Tensor:
        if traverse_code:
            return self.code_grid(traverse_code, frames, generators)
        return super().interpolate(frames, generators, class_labels=class_labels, **opts)

    @torch.inference_mode()
    def traverse(self, images: torch.Tensor | None = None, *, frames: int = 10, generators: Any = None,
                 class_labels: Any = None, **_: Any) -> torch.Tensor:
        """`gencli interpolate infogan --traverse`: one row per code (c1.. categorical, then the
        continuous ones), ``frames`` images each, from the first seed's z and codes: a categorical
        code steps through its categories (each once with ``--frames`` equal to its size), a
        continuous one sweeps -2..2. (rows, frames, C, H, W)."""
        if images is not None:
            raise UsageError("infogan has no encoder: --traverse starts from --seeds, not an image")
        gens = list(generators or []) or [self.seed_generator(0)]
        base = self.prior(1, gens[0])
        steps = torch.arange(frames, device=base.device)
        rows = [self._vary(base, i, (steps * k) // frames)[0] for i, k in enumerate(self._cats)]
        rows += [self._vary(base, len(self._cats) + j, torch.linspace(-2, 2, frames, device=base.device))[0]
                 for j in range(self._cont)]
        return self._decode_grid(torch.stack(rows))

    def code_grid(self, code: str, frames: int, generators: list[torch.Generator]) -> torch.Tensor:
        """(rows = seeds, columns = values of ``code``, C, H, W): one code varied per row."""
        names = [f"c{i + 1}" for i in range(len(self._cats) + self._cont)]
        if code not in names:
            raise UsageError(f"--traverse-code {code!r}: this model's codes are {', '.join(names)} "
                             f"(c1..c{len(self._cats)} categorical, the rest continuous)")
        idx = names.index(code)
        base = torch.cat([self.prior(1, g) for g in generators])  # (R, latent)
        values = (torch.arange(self._cats[idx], device=base.device) if idx < len(self._cats)
                  else torch.linspace(-2, 2, frames, device=base.device))
        return self._decode_grid(self._vary(base, idx, values))

    def _vary(self, base: torch.Tensor, idx: int, values: torch.Tensor) -> torch.Tensor:
        """(R, len(values), latent): each of ``base``'s R latents with code ``idx`` set to each of
        ``values`` (category indices for a categorical code, values for a continuous one)."""
        lat = base[:, None].repeat(1, len(values), 1)
        lo = int(self.config["z_dim"]) + sum(self._cats[:idx])
        if idx < len(self._cats):
            k = self._cats[idx]
            lat[:, :, lo:lo + k] = F.one_hot(values, k).to(lat.dtype)
        else:
            lat[:, :, lo + idx - len(self._cats)] = values
        return lat

    def _decode_grid(self, lat: torch.Tensor) -> torch.Tensor:
        x = self.decode(lat.flatten(0, 1))
        return x.view(*lat.shape[:2], *x.shape[1:])
