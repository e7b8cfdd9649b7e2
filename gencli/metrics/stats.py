"""Feature statistics and the Frechet distance.

* :class:`RunningStats` accumulates the mean and covariance of feature vectors batch by batch in
  float64 (Chan et al.'s pairwise update), so memory is O(d^2) whatever the number of images.
  The covariance is the unbiased one (``n - 1``), as ``np.cov(rowvar=False)`` in pytorch-fid.
* :func:`frechet_distance` computes ``|mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2)`` without
  ``scipy.linalg.sqrtm``: for any factor ``S1 = R R^T`` the eigenvalues of ``S1 S2`` are those of
  the symmetric positive semi-definite ``M = R^T S2 R``, so
  ``tr sqrt(S1 S2) = sum_i sqrt(max(eig_i(M), 0))``. ``R`` is the Cholesky factor when a
  covariance is safely positive definite (one Cholesky, two matmuls, one values-only ``eigvalsh``:
  over 10x faster than ``sqrtm`` at 2048-d), else ``V diag(sqrt(max(w, 0)))`` from ``eigh``, which
  is exact for rank-deficient covariances (fewer images than dimensions) too: no ``eps * I`` is
  needed and no "imaginary component" can appear.
* ``.npz`` statistics files in pytorch-fid's layout (``mu`` (d,), ``sigma`` (d, d)), plus
  optional ``n`` and ``meta`` (a JSON string) that gencli writes and other tools ignore.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gencli.errors import GencliError, InputError, UsageError

__all__ = [
    "FeatureStats",
    "RunningStats",
    "FewSamplesWarning",
    "frechet_distance",
    "save_stats",
    "load_stats",
]


class FewSamplesWarning(UserWarning):
    """Fewer images than feature dimensions: the covariance is rank-deficient, FID biased."""


@dataclass
class FeatureStats:
    """Mean ``mu`` (d,) and covariance ``sigma`` (d, d) of ``n`` feature vectors (float64).

    ``root``: for at most d vectors (kept by :class:`RunningStats`, never saved), their centred
    rows over ``sqrt(n - 1)``, (n, d): ``sigma = root.T @ root``, a factor of rank n - 1 that
    :func:`frechet_distance` uses instead of decomposing ``sigma``."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    root: np.ndarray | None = field(default=None, repr=False)

    @property
    def dims(self) -> int:
        return int(self.mu.shape[0])


class RunningStats:
    """Streaming float64 mean and covariance of row vectors.

    ``update(x)`` takes an (n, d) batch (numpy or torch, any float dtype); ``finalize()`` returns
    a :class:`FeatureStats` with the unbiased covariance. Batches are merged with the pairwise
    formula of Chan, Golub & LeVeque (1979), which is as accurate as a two-pass computation.
    """

    #: rows gathered before they are merged: each merge reads and writes the d x d sum (32 MB
    #: for d = 2048), so merging every small batch of 8 cost ~30 ms each; memory stays bounded
    #: (CHUNK x d float64, 4 MB at d = 2048) whatever the number of images.
    CHUNK = 256

    def __init__(self, dims: int | None = None):
        self._n = 0
        self.dims = dims
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None  # sum of centred outer products
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._rows: list[np.ndarray] | None = []  # every row while there are at most d (see FeatureStats.root)

    @property
    def n(self) -> int:
        return self._n + self._pending_rows

    def update(self, x: Any) -> None:
        x = _as_float64_2d(x)
        if x.shape[0] == 0:
            return
        if self.dims is None:
            self.dims = x.shape[1]
        elif x.shape[1] != self.dims:
            raise ValueError(f"feature batch has {x.shape[1]} dims, expected {self.dims}")
        self._pending.append(x)
        self._pending_rows += x.shape[0]
        if self._rows is not None:
            self._rows.append(x)
            if self.n > self.dims:
                self._rows = None
        if self._pending_rows >= self.CHUNK:
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        x = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        self._pending, self._pending_rows = [], 0
        nb = x.shape[0]
        mean_b = x.mean(axis=0)
        xc = x - mean_b
        if self._mean is None:
            self._n, self._mean, self._m2 = nb, mean_b, _gram(xc)
            return
        n = self._n + nb
        delta = mean_b - self._mean
        # m2 += xc^T xc + (n_a n_b / n) delta delta^T, as one product of the stacked rows
        rows = np.vstack([xc, delta[None] * np.sqrt(self._n * nb / n)])
        self._m2 += _gram(rows)
        self._mean = self._mean + delta * (nb / n)
        self._n = n

    def state(self) -> tuple[int, np.ndarray | None, np.ndarray | None]:
        """(n, mean, centred sum of outer products): what :meth:`merge_state` combines."""
        self._merge()
        return self._n, self._mean, self._m2

    def merge_state(self, n: int, mean: np.ndarray | None, m2: np.ndarray | None) -> None:
        """Add another :class:`RunningStats`' :meth:`state` (Chan et al.'s pairwise update: the
        same formula as between batches, so merging shares equals streaming them all)."""
        self._merge()
        if not n:
            return
        self._rows = None
        if self.dims is None:
            self.dims = int(mean.shape[0])
        if self._mean is None:
            self._n, self._mean, self._m2 = int(n), mean.copy(), m2.copy()
            return
        total = self._n + n
        delta = mean - self._mean
        self._m2 = self._m2 + m2 + np.outer(delta, delta) * (self._n * n / total)
        self._mean = self._mean + delta * (n / total)
        self._n = total

    def finalize(self) -> FeatureStats:
        self._merge()
        if self._mean is None or self.n < 2:
            raise InputError(
                f"need at least 2 images to estimate feature statistics, got {self.n}"
            )
        m2 = torch.from_numpy(self._m2)
        # exact symmetry (it is symmetric up to rounding); torch's transposed add is ~2x numpy's
        sigma = torch.add(m2, m2.T).mul_(0.5 / (self.n - 1)).numpy()
        root = None
        if self._rows is not None:
            root = (np.concatenate(self._rows) - self._mean) / np.sqrt(self.n - 1)
        return FeatureStats(mu=self._mean.copy(), sigma=sigma, n=self.n, root=root)


def _gram(x: np.ndarray) -> np.ndarray:
    """``x.T @ x`` (float64) with torch's BLAS and thread pool: numpy's own BLAS threads took
    1.5x as long next to torch's (40 against 27 ms for 200 x 2048 on 2 cores)."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    return (t.T @ t).numpy()


def _as_float64_2d(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().to("cpu").double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected an (n, d) array of features, got shape {x.shape}")
    return x


def _check_pair(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> None:
    if mu1.ndim != 1 or mu2.ndim != 1:
        raise InputError(f"means must be vectors, got shapes {mu1.shape} and {mu2.shape}")
    d = mu1.shape[0]
    if mu2.shape[0] != d:
        raise InputError(
            f"statistics have different feature dimensions ({d} vs {mu2.shape[0]}): "
            "they were computed with different feature extractors or --dims"
        )
    for name, s in (("first", sigma1), ("second", sigma2)):
        if s.shape != (d, d):
            raise InputError(f"the {name} covariance has shape {s.shape}, expected ({d}, {d})")
    for name, a in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.all(np.isfinite(a)):
            raise InputError(f"statistics contain NaN or infinite values ({name})")


def _sym(a: torch.Tensor) -> torch.Tensor:
    return (a + a.T) * 0.5


def sqrtm_trace(sigma1: np.ndarray, sigma2: np.ndarray, n1: int | None = None, n2: int | None = None,
                root1: np.ndarray | None = None, root2: np.ndarray | None = None) -> float:
    """``tr sqrt(S1 S2)`` for symmetric positive semi-definite ``S1``, ``S2`` (float64).

    The eigenvalues of ``S1 S2`` are those of ``R^T S2 R`` for any factor ``S1 = R R^T``, which is
    symmetric PSD, so one symmetric eigenvalue problem (values only) gives the trace; the roles
    of S1 and S2 can be swapped. When both are safely positive definite, ``R`` is S1's Cholesky
    factor. Otherwise (fewer images than dimensions) ``R = V_r diag(sqrt(w_r))`` holds the r
    nonzero eigenpairs of the singular side with the lower rank, so ``R^T S2 R`` is r x r with no
    structurally zero eigenvalues: every eigenvalue it has is real signal, down to rounding level
    (measured on 500 + 500 Inception features: a noise threshold there biased FID by 1e-3), and
    only negative rounding is clipped. Checked against the exact rank-deficient value, the nuclear
    norm of ``A1 A2^T / sqrt((n1-1)(n2-1))`` from the centred features: 1e-7 relative.

    ``n1``, ``n2``: the sample counts behind the covariances, when known. A covariance of n
    samples has rank at most n - 1, so a side with n <= d is singular without a Cholesky attempt,
    and when both sides are singular only the side with fewer samples (S1 on a tie) is
    decomposed: one 2048 x 2048 eigendecomposition instead of two (~0.5 s of a 200 + 200 image FID
    on a 2-core Xeon).

    ``root1``, ``root2``: the (n, d) factors ``S = root.T @ root`` of sides with at most d samples
    (:attr:`FeatureStats.root`), when known: no decomposition of a d x d matrix at all. With both,
    the trace is the nuclear norm of ``root1 @ root2.T`` (n1 x n2); with one, ``R = root.T``.
    """
    if root1 is not None and root2 is not None:
        return float(torch.linalg.svdvals(torch.from_numpy(root1) @ torch.from_numpy(root2).T).sum())
    if root1 is not None or root2 is not None:
        root, other = (root1, sigma2) if root1 is not None else (root2, sigma1)
        r = torch.from_numpy(np.ascontiguousarray(root, dtype=np.float64))
        return _sum_sqrt(torch.linalg.eigvalsh(_sym(r @ torch.from_numpy(np.asarray(other, np.float64)) @ r.T)))
    t1 = _sym(torch.from_numpy(np.ascontiguousarray(sigma1, dtype=np.float64)))
    t2 = _sym(torch.from_numpy(np.ascontiguousarray(sigma2, dtype=np.float64)))
    d = t1.shape[0]
    # fewer than d + 1 samples: singular for sure, no Cholesky attempt needed
    low1 = None if n1 and n1 <= d else _safe_cholesky(t1)
    low2 = None if n2 and n2 <= d else _safe_cholesky(t2)
    if low1 is not None and low2 is not None:
        return _sum_sqrt(torch.linalg.eigvalsh(_sym(low1.T @ t2 @ low1)))
    sides = [(t1, t2, low1), (t2, t1, low2)]
    if low1 is None and low2 is None and n1 and n2:
        sides = [sides[1] if n2 < n1 else sides[0]]  # the other side's rank can only be as high
    best = None
    for a, b, low in sides:
        if low is not None:
            continue
        w, v = torch.linalg.eigh(a)
        keep = _zero_noise(w) > 0  # S's own rounding-level eigenvalues (a clean gap below its rank)
        if best is None or int(keep.sum()) < best[0]:
            best = (int(keep.sum()), v[:, keep] * w[keep].sqrt(), b)
    _, root, other = best
    return _sum_sqrt(torch.linalg.eigvalsh(_sym(root.T @ other @ root)))


def _safe_cholesky(a: torch.Tensor) -> torch.Tensor | None:
    """Cholesky factor of ``a``, or None unless it is safely positive definite (a pivot near
    rounding level means numerically singular: the factor would be garbage)."""
    scale = float(a.diagonal().max())
    if scale <= 0:
        return None
    low, info = torch.linalg.cholesky_ex(a)
    if int(info) != 0 or float(low.diagonal().square().min()) <= _PIVOT_RTOL * scale:
        return None
    return low


def _zero_noise(ev: torch.Tensor) -> torch.Tensor:
    """A covariance's eigenvalues below rounding level (``d * eps * max``) are exact zeros of a
    singular matrix (its rank is at most n - 1)."""
    top = float(ev.max()) if ev.numel() else 0.0
    tol = ev.shape[0] * torch.finfo(ev.dtype).eps * max(top, 0.0)
    return torch.where(ev > tol, ev, torch.zeros_like(ev))


def _sum_sqrt(ev: torch.Tensor) -> float:
    return float(ev.clamp(min=0).sqrt().sum())


_PIVOT_RTOL = 1e-10


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, n1: int | None = None,
                     n2: int | None = None, root1: np.ndarray | None = None,
                     root2: np.ndarray | None = None) -> float:
    """The Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017).

    ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)``, computed in float64 from symmetric
    eigendecompositions (no ``scipy.linalg.sqrtm``). Always finite and clipped at 0 (rounding
    can make the exact answer for identical inputs come out as -1e-12). ``n1``, ``n2``: the
    sample counts, when known; ``root1``, ``root2``: low-rank factors, when known (see
    :func:`sqrtm_trace`).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    _check_pair(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    tr = sqrtm_trace(sigma1, sigma2, n1, n2, root1, root2)
    fd = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr)
    return max(fd, 0.0)


def warn_if_few(n: int, dims: int, what: str = "") -> None:
    """Warn (FewSamplesWarning) when ``n`` < ``dims``: the covariance is then rank-deficient."""
    if 0 < n < dims:
        label = f"{what}: " if what else ""
        warnings.warn(
            f"{label}only {n} images for {dims}-d features: the covariance is rank-deficient and "
            f"the Frechet distance is strongly biased (use at least {dims} images, ideally 10k+)",
            FewSamplesWarning,
            stacklevel=2,
        )


# --------------------------------------------------------------------------------------------
# .npz files


def save_stats(path: str | os.PathLike[str], stats: FeatureStats, *, force: bool = False) -> Path:
    """Write ``mu``/``sigma`` (pytorch-fid layout) plus ``n`` and a JSON ``meta``, atomically."""
    import io

    from gencli.io.writers import atomic_write_bytes

    path = Path(path).expanduser()
    if path.suffix.lower() != ".npz":
        raise UsageError(f"--save-stats {path}: the file name must end in .npz")
    if path.exists() and not force:
        raise UsageError(f"{path} exists; pass --force to overwrite")
    buf = io.BytesIO()
    np.savez(
        buf,
        mu=np.asarray(stats.mu, np.float64),
        sigma=np.asarray(stats.sigma, np.float64),
        n=np.int64(stats.n),
        meta=np.array(json.dumps(stats.meta, sort_keys=True, default=str)),
    )
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:
        raise GencliError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def load_stats(path: str | os.PathLike[str]) -> FeatureStats:
    """Read a statistics ``.npz`` (pytorch-fid's or gencli's); one-line errors for bad files."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"no such statistics file: {path}")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # np.load would try to unpickle anything that is not a zip
            raise InputError(f"{path} is not a readable .npz file (not a zip archive); expected the mu/sigma "
                             "arrays written by `gencli evaluate --save-stats` or pytorch-fid")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            if not {"mu", "sigma"} <= keys:
                missing = ", ".join(sorted({"mu", "sigma"} - keys))
                found = ", ".join(sorted(keys)) or "nothing"
                raise InputError(
                    f"{path} is not a statistics file: it has no {missing} (found {found}); "
                    "expected the mu/sigma arrays written by `gencli evaluate --save-stats` or pytorch-fid"
                )
            mu = np.asarray(data["mu"], dtype=np.float64)
            sigma = np.asarray(data["sigma"], dtype=np.float64)
            n = int(data["n"]) if "n" in keys and data["n"].shape == () else 0
            meta: dict[str, Any] = {}
            if "meta" in keys and data["meta"].shape == ():
                try:
                    parsed = json.loads(str(data["meta"]))
                    meta = parsed if isinstance(parsed, dict) else {}
                except ValueError:
                    meta = {}
    except InputError:
        raise
    except (OSError, ValueError, EOFError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        if detail.startswith("Object arrays"):  # np.load(allow_pickle=False) met an object array
            raise InputError(f"{path}: refusing to load: it holds pickled Python objects (object arrays), "
                             "which gencli never unpickles; statistics are plain float arrays") from None
        raise InputError(f"{path} is not a readable .npz file ({detail})") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise InputError(
            f"{path}: mu has shape {mu.shape} and sigma {sigma.shape}; expected (d,) and (d, d)"
        )
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise InputError(f"{path}: the statistics contain NaN or infinite values")
    return FeatureStats(mu=mu, sigma=sigma, n=n, meta=meta)
