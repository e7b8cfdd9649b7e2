"""Inception Score (Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016).

``IS = exp(E_x KL(p(y|x) || p(y)))`` computed on ``splits`` equal splits and reported as the
mean and (population) standard deviation over splits. As in torch-fidelity, ``p(y|x)`` is the
softmax of the 1008-way Inception logits *without* the fc bias ("logits_unbiased"), the samples
are shuffled first with ``np.random.RandomState(seed).permutation`` (default seed 2020), split
``i`` takes rows ``[i*N//splits, (i+1)*N//splits)``, and everything is computed in float64.
With ``--features fmnist`` the classifier's 10-way logits play the role of ``p(y|x)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gencli.errors import InputError

__all__ = ["ISResult", "inception_score"]

DEFAULT_SPLITS = 10
DEFAULT_SEED = 2020


@dataclass(frozen=True)
class ISResult:
    mean: float
    std: float
    splits: int


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def inception_score(logits: Any, *, splits: int = DEFAULT_SPLITS, seed: int = DEFAULT_SEED,
                    shuffle: bool = True) -> ISResult:
    """Inception Score of (N, C) logits; see the module docstring for the exact procedure."""
    if hasattr(logits, "detach"):
        logits = logits.detach().to("cpu").double().numpy()
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"expected (n, classes) logits, got shape {z.shape}")
    n = z.shape[0]
    if splits < 1:
        raise InputError(f"--splits must be at least 1, got {splits}")
    if n < splits:
        raise InputError(f"the Inception Score with {splits} splits needs at least {splits} images, got {n}")
    if shuffle:
        z = z[np.random.RandomState(seed).permutation(n)]
    log_p = _log_softmax(z)
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        pc, lpc = p[lo:hi], log_p[lo:hi]
        log_q = np.log(pc.mean(axis=0, keepdims=True))
        kl = (pc * (lpc - log_q)).sum(axis=1).mean()
        scores.append(float(np.exp(kl)))
    return ISResult(mean=float(np.mean(scores)), std=float(np.std(scores)), splits=splits)
