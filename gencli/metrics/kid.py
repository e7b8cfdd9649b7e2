"""Kernel Inception Distance (Binkowski et al., "Demystifying MMD GANs", ICLR 2018).

The unbiased estimator of the squared MMD with the cubic polynomial kernel
``k(x, y) = (x.y / d + 1)^3``, averaged over ``subsets`` random subsets of ``subset_size``
features from each side (drawn without replacement). The subsets are drawn exactly as
torch-fidelity draws them (``np.random.RandomState(seed).choice(n, size, replace=False)``, first
for the first input, then for the second, per subset), so with the same features and seed
(torch-fidelity's default is 2020) the result is the same. Returns the mean and the (population)
standard deviation over subsets.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from gencli.errors import InputError

__all__ = ["KIDResult", "kernel_inception_distance", "polynomial_mmd2"]

DEFAULT_SUBSETS = 100
DEFAULT_SUBSET_SIZE = 1000
DEFAULT_SEED = 2020

# Above this many features per side the full Gram matrices are not precomputed (memory).
_FULL_GRAM_MAX = 4096


@dataclass(frozen=True)
class KIDResult:
    mean: float
    std: float
    subsets: int
    subset_size: int


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().to("cpu").double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected (n, d) features, got shape {x.shape}")
    return x


def _kernel(g: np.ndarray, d: int, degree: int, coef0: float, gamma: float | None) -> np.ndarray:
    gamma = 1.0 / d if gamma is None else gamma
    return (g * gamma + coef0) ** degree


def _mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    m = k_xx.shape[0]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def polynomial_mmd2(x: Any, y: Any, degree: int = 3, coef0: float = 1.0, gamma: float | None = None) -> float:
    """Unbiased MMD^2 between two equal-size feature sets with the polynomial kernel."""
    x, y = _as_array(x), _as_array(y)
    d = x.shape[1]
    return _mmd2_unbiased(
        _kernel(x @ x.T, d, degree, coef0, gamma),
        _kernel(x @ y.T, d, degree, coef0, gamma),
        _kernel(y @ y.T, d, degree, coef0, gamma),
    )


def kernel_inception_distance(
    features1: Any,
    features2: Any,
    *,
    subsets: int = DEFAULT_SUBSETS,
    subset_size: int = DEFAULT_SUBSET_SIZE,
    seed: int = DEFAULT_SEED,
    degree: int = 3,
    coef0: float = 1.0,
    gamma: float | None = None,
) -> KIDResult:
    """KID mean and std over ``subsets`` subsets of ``subset_size`` (see the module docstring).

    When either side has fewer than ``subset_size`` features, the subset size is reduced to the
    smaller count (with a warning) instead of failing; at least 2 per side are needed.
    """
    x, y = _as_array(features1), _as_array(features2)
    if x.shape[1] != y.shape[1]:
        raise InputError(f"feature sets have different dimensions ({x.shape[1]} vs {y.shape[1]})")
    n1, n2 = x.shape[0], y.shape[0]
    if min(n1, n2) < 2:
        raise InputError(f"KID needs at least 2 images on each side, got {n1} and {n2}")
    if subsets < 1:
        raise InputError(f"KID needs at least 1 subset, got {subsets}")
    size = subset_size
    if size > min(n1, n2):
        size = min(n1, n2)
        warnings.warn(
            f"KID subset size reduced from {subset_size} to {size} (only {n1} and {n2} images); "
            "values are not comparable with the standard 1000",
            UserWarning,
            stacklevel=2,
        )
    if size < 2:
        raise InputError("KID needs a subset size of at least 2")
    d = x.shape[1]
    rng = np.random.RandomState(seed)
    full = max(n1, n2) <= _FULL_GRAM_MAX and (n1 * n2) < 10 * subsets * size * size
    if full:
        k11 = _kernel(x @ x.T, d, degree, coef0, gamma)
        k22 = _kernel(y @ y.T, d, degree, coef0, gamma)
        k12 = _kernel(x @ y.T, d, degree, coef0, gamma)
    mmds = np.empty(subsets)
    for i in range(subsets):
        a = rng.choice(n1, size, replace=False)
        b = rng.choice(n2, size, replace=False)
        if full:
            mmds[i] = _mmd2_unbiased(k11[np.ix_(a, a)], k12[np.ix_(a, b)], k22[np.ix_(b, b)])
        else:
            mmds[i] = polynomial_mmd2(x[a], y[b], degree, coef0, gamma)
    return KIDResult(mean=float(mmds.mean()), std=float(mmds.std()), subsets=subsets, subset_size=size)
