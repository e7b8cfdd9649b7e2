"""Improved precision and recall (Kynkaanniemi et al., "Improved Precision and Recall Metric for
Assessing Generative Models", NeurIPS 2019).

Each feature set defines a manifold: the union of balls around its samples whose radius is the
distance to the k-th nearest neighbour within the same set (k=3, the sample itself excluded).
*Precision* is the fraction of generated samples inside the real manifold, *recall* the fraction
of real samples inside the generated manifold. torch-fidelity computes it on VGG16 fc2 features
(after ReLU, 4096-d) and calls the generated set "input 1"; gencli's ``evaluate pr REAL FAKE``
takes the real set first, like ``evaluate fid``. Distances are computed in float64 in blocks, so
memory is O(block * n) rather than O(n^2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from gencli.errors import InputError

__all__ = ["PRResult", "precision_recall"]

DEFAULT_K = 3
_BLOCK = 2048


@dataclass(frozen=True)
class PRResult:
    precision: float
    recall: float
    f_score: float
    k: int


def _as_tensor(x: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.dim() != 2:
        raise ValueError(f"expected (n, d) features, got shape {tuple(x.shape)}")
    return x.detach().to("cpu", torch.float64)


def _kth_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each row of ``x`` to its k-th nearest other row."""
    out = []
    for start in range(0, x.shape[0], _BLOCK):
        d = torch.cdist(x[start:start + _BLOCK], x, compute_mode="donot_use_mm_for_euclid_dist")
        out.append(d.kthvalue(k + 1, dim=1).values)  # k+1: the zero distance to itself
    return torch.cat(out)


def _coverage(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor) -> float:
    """Fraction of ``queries`` within radius[j] of some support[j]."""
    inside = []
    for start in range(0, queries.shape[0], _BLOCK):
        d = torch.cdist(queries[start:start + _BLOCK], support, compute_mode="donot_use_mm_for_euclid_dist")
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside).double().mean().item()


def precision_recall(real: Any, fake: Any, *, k: int = DEFAULT_K) -> PRResult:
    """Precision (fake inside real's manifold) and recall (real inside fake's) with ``k`` neighbours."""
    real, fake = _as_tensor(real), _as_tensor(fake)
    if real.shape[1] != fake.shape[1]:
        raise InputError(f"feature sets have different dimensions ({real.shape[1]} vs {fake.shape[1]})")
    if k < 1:
        raise InputError(f"--k must be at least 1, got {k}")
    for name, x in (("first", real), ("second", fake)):
        if x.shape[0] < k + 1:
            raise InputError(f"precision/recall with k={k} needs at least {k + 1} images per set; "
                             f"the {name} set has {x.shape[0]}")
    r_real = _kth_radius(real, k)
    r_fake = _kth_radius(fake, k)
    precision = _coverage(fake, real, r_real)
    recall = _coverage(real, fake, r_fake)
    f_score = 2 * precision * recall / max(1e-5, precision + recall)
    return PRResult(precision=precision, recall=recall, f_score=f_score, k=k)
