"""gencli.metrics: streaming statistics, Frechet distance, KID, IS, precision/recall, .npz IO."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from references import require

from gencli.errors import InputError, UsageError
from gencli.metrics.inception_score import inception_score
from gencli.metrics.kid import kernel_inception_distance, polynomial_mmd2
from gencli.metrics.prd import precision_recall
from gencli.metrics.stats import (
    FeatureStats,
    FewSamplesWarning,
    RunningStats,
    frechet_distance,
    load_stats,
    save_stats,
    warn_if_few,
)


def _random_cov(rng: np.random.Generator, d: int, n: int | None = None) -> np.ndarray:
    x = rng.standard_normal((n or 3 * d, d)) @ rng.standard_normal((d, d)) * 0.3
    return np.cov(x, rowvar=False)


def _scipy_fd(mu1, s1, mu2, s2):
    linalg = require("scipy.linalg")
    covmean = linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# --- streaming statistics ------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [256, 10])  # 10: rows are merged every few batches, unevenly
@pytest.mark.parametrize("batch", [1, 7, 64, 1000])
def test_running_stats_equal_np_cov(batch, chunk, monkeypatch):
    monkeypatch.setattr(RunningStats, "CHUNK", chunk)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 16)) * 5 + 100  # large offset: catches naive sum-of-squares
    rs = RunningStats()
    for i in range(0, len(x), batch):
        rs.update(torch.from_numpy(x[i:i + batch]).float() if batch == 7 else x[i:i + batch])
        assert rs.n == min(i + batch, len(x))
    st = rs.finalize()
    xf = x.astype(np.float32).astype(np.float64) if batch == 7 else x
    np.testing.assert_allclose(st.mu, xf.mean(axis=0), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(st.sigma, np.cov(xf, rowvar=False), rtol=1e-9, atol=1e-10)
    assert st.n == 300 and st.sigma.dtype == np.float64
    np.testing.assert_array_equal(st.sigma, st.sigma.T)


def test_running_stats_needs_two():
    rs = RunningStats()
    rs.update(np.ones((1, 4)))
    with pytest.raises(InputError, match="at least 2"):
        rs.finalize()
    with pytest.raises(InputError):
        RunningStats().finalize()


def test_running_stats_rejects_other_dims():
    rs = RunningStats()
    rs.update(np.ones((3, 4)))
    with pytest.raises(ValueError):
        rs.update(np.ones((3, 5)))


# --- Frechet distance ----------------------------------------------------------------------
@pytest.mark.parametrize("d", [2, 16, 64])
def test_frechet_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    ours = frechet_distance(mu1, s1, mu2, s2)
    ref = _scipy_fd(mu1, s1, mu2, s2)
    assert ours == pytest.approx(ref, rel=1e-6)


def test_frechet_known_values():
    # 1-d: (m1-m2)^2 + (s1 - s2)^2 for standard deviations s1, s2
    assert frechet_distance([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(9 + 1)
    # diagonal covariances
    a, b = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 4.0, 1.0])
    expected = (1 - 2) ** 2 + 0 + (3 - 1) ** 2
    assert frechet_distance(np.zeros(3), a, np.zeros(3), b) == pytest.approx(expected)


def test_frechet_identical_is_zero_and_symmetric():
    rng = np.random.default_rng(1)
    s = _random_cov(rng, 32)
    mu = rng.standard_normal(32)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)
    s2 = _random_cov(rng, 32)
    assert frechet_distance(mu, s, mu, s2) == pytest.approx(frechet_distance(mu, s2, mu, s), rel=1e-9)


def test_frechet_rank_deficient_finite_nonnegative():
    rng = np.random.default_rng(2)
    d = 64
    for n1, n2 in [(10, 10), (5, 40), (2, 2), (3, 65)]:
        x1 = rng.standard_normal((n1, d))
        x2 = rng.standard_normal((n2, d)) + 0.1
        s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
        fd = frechet_distance(x1.mean(0), s1, x2.mean(0), s2)
        assert np.isfinite(fd) and fd >= 0
    # identical rank-deficient sets: exactly 0 up to rounding, never negative
    x = rng.standard_normal((5, d))
    s = np.cov(x, rowvar=False)
    fd = frechet_distance(x.mean(0), s, x.mean(0), s)
    assert 0 <= fd < 1e-8


def test_frechet_rank_deficient_agrees_with_regularised_sqrtm():
    linalg = require("scipy.linalg")
    rng = np.random.default_rng(3)
    d = 32
    x1, x2 = rng.standard_normal((12, d)), rng.standard_normal((20, d)) * 1.3
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    mu1, mu2 = x1.mean(0), x2.mean(0)
    eps = 1e-10 * np.eye(d)
    covmean = np.real(linalg.sqrtm((s1 + eps) @ (s2 + eps)))
    diff = mu1 - mu2
    ref = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-4)


def test_frechet_bad_input():
    with pytest.raises(InputError, match="different feature dimensions"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(InputError, match="NaN"):
        frechet_distance(np.zeros(2), np.array([[np.nan, 0], [0, 1]]), np.zeros(2), np.eye(2))


def test_few_samples_warning():
    with pytest.warns(FewSamplesWarning, match="only 10 images for 2048-d"):
        warn_if_few(10, 2048, "real")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_few(3000, 2048)


# --- npz -------------------------------------------------------------------------------------
def test_npz_roundtrip_and_pytorch_fid_layout(tmp_path):
    rng = np.random.default_rng(4)
    st = FeatureStats(mu=rng.standard_normal(8), sigma=_random_cov(rng, 8), n=24, meta={"features": "x"})
    path = save_stats(tmp_path / "s.npz", st)
    with np.load(path) as data:  # what pytorch-fid reads
        np.testing.assert_array_equal(data["mu"], st.mu)
        np.testing.assert_array_equal(data["sigma"], st.sigma)
    back = load_stats(path)
    np.testing.assert_array_equal(back.sigma, st.sigma)
    assert back.n == 24 and back.meta == {"features": "x"}
    with pytest.raises(UsageError, match="exists"):
        save_stats(path, st)
    save_stats(path, st, force=True)
    with pytest.raises(UsageError, match=".npz"):
        save_stats(tmp_path / "s.txt", st)


def test_npz_foreign_file_is_read(tmp_path):
    # pytorch-fid's --save-stats writes exactly np.savez(path, mu=mu, sigma=sigma), float32 or 64
    np.savez(tmp_path / "pf.npz", mu=np.zeros(4, np.float32), sigma=np.eye(4, dtype=np.float32))
    st = load_stats(tmp_path / "pf.npz")
    assert st.mu.dtype == np.float64 and st.n == 0


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", mean=np.zeros(3))
    with pytest.raises(InputError, match="no mu, sigma"):
        load_stats(tmp_path / "bad.npz")
    np.savez(tmp_path / "shape.npz", mu=np.zeros(3), sigma=np.eye(4))
    with pytest.raises(InputError, match="expected"):
        load_stats(tmp_path / "shape.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable"):
        load_stats(tmp_path / "junk.npz")
    with pytest.raises(InputError, match="no such"):
        load_stats(tmp_path / "missing.npz")


# --- KID -------------------------------------------------------------------------------------
def _reference_kid(x, y, subsets, size, seed):
    """Straight transcription of the definition (independent of gencli's implementation)."""
    rng = np.random.RandomState(seed)
    d = x.shape[1]
    vals = []
    for _ in range(subsets):
        a = x[rng.choice(len(x), size, replace=False)]
        b = y[rng.choice(len(y), size, replace=False)]
        kxx, kyy, kxy = ((a @ a.T) / d + 1) ** 3, ((b @ b.T) / d + 1) ** 3, ((a @ b.T) / d + 1) ** 3
        m = size
        mmd = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / m**2
        vals.append(mmd)
    return np.mean(vals), np.std(vals)


def test_kid_matches_definition():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((120, 10))
    y = rng.standard_normal((90, 10)) + 0.3
    res = kernel_inception_distance(x, y, subsets=7, subset_size=50, seed=3)
    mean, std = _reference_kid(x, y, 7, 50, 3)
    assert res.mean == pytest.approx(mean, rel=1e-10)
    assert res.std == pytest.approx(std, rel=1e-10)
    assert res.mean > 0


def test_kid_same_distribution_near_zero_and_small_sets():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((200, 8)), rng.standard_normal((200, 8))
    res = kernel_inception_distance(x, y, subsets=10, subset_size=100)
    assert abs(res.mean) < 0.05
    with pytest.warns(UserWarning, match="subset size reduced from 1000 to 200"):
        small = kernel_inception_distance(x, y, subsets=3)
    assert small.subset_size == 200
    with pytest.raises(InputError):
        kernel_inception_distance(x[:1], y)


def test_polynomial_mmd2_shifted_is_larger():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((60, 5)), rng.standard_normal((60, 5))
    assert polynomial_mmd2(x, y + 2.0) > polynomial_mmd2(x, y) + 0.1


# --- IS --------------------------------------------------------------------------------------
def test_inception_score_extremes():
    n, c = 100, 10
    confident = np.full((n, c), -50.0)
    confident[np.arange(n), np.arange(n) % c] = 50.0
    res = inception_score(confident, splits=10, shuffle=False)
    assert res.mean == pytest.approx(10.0, rel=1e-6)
    uniform = np.zeros((n, c))
    assert inception_score(uniform).mean == pytest.approx(1.0)
    with pytest.raises(InputError, match="at least 10 images"):
        inception_score(uniform[:5])


def test_inception_score_matches_definition():
    rng = np.random.default_rng(8)
    z = rng.standard_normal((53, 7)) * 3
    res = inception_score(torch.from_numpy(z).float(), splits=4, seed=11)
    z32 = torch.from_numpy(z).float().double().numpy()[np.random.RandomState(11).permutation(53)]
    scores = []
    for i in range(4):
        chunk = z32[i * 53 // 4:(i + 1) * 53 // 4]
        p = np.exp(chunk) / np.exp(chunk).sum(1, keepdims=True)
        q = p.mean(0)
        scores.append(np.exp(np.mean(np.sum(p * (np.log(p) - np.log(q)), 1))))
    assert res.mean == pytest.approx(np.mean(scores), rel=1e-10)
    assert res.std == pytest.approx(np.std(scores), rel=1e-8)


# --- precision / recall ----------------------------------------------------------------------
def test_precision_recall_basic():
    rng = np.random.default_rng(9)
    real = rng.standard_normal((200, 4))
    same = rng.standard_normal((200, 4))
    res = precision_recall(real, same, k=3)
    assert res.precision > 0.8 and res.recall > 0.8
    far = rng.standard_normal((200, 4)) + 50
    res = precision_recall(real, far, k=3)
    assert res.precision == 0.0 and res.recall == 0.0
    # mode collapse: fakes all near one real point -> high precision, low recall
    collapsed = real[:1] + rng.standard_normal((200, 4)) * 0.01
    res = precision_recall(real, collapsed, k=3)
    assert res.precision > 0.9 and res.recall < 0.1
    with pytest.raises(InputError, match="at least 4"):
        precision_recall(real[:3], same)


def test_precision_recall_matches_bruteforce():
    rng = np.random.default_rng(10)
    real, fake = rng.standard_normal((40, 3)), rng.standard_normal((30, 3)) * 1.5
    k = 3

    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]

    def cover(q, s, r):
        d = np.linalg.norm(q[:, None] - s[None], axis=-1)
        return np.mean((d <= r[None]).any(axis=1))

    res = precision_recall(real, fake, k=k)
    assert res.precision == pytest.approx(cover(fake, real, radii(real)))
    assert res.recall == pytest.approx(cover(real, fake, radii(fake)))


def test_cholesky_and_eigh_routes_agree():
    from gencli.metrics.stats import sqrtm_trace

    rng = np.random.default_rng(11)
    s1, s2 = _random_cov(rng, 48), _random_cov(rng, 48)
    w, v = np.linalg.eigh(s1)
    r = v * np.sqrt(np.clip(w, 0, None))
    ref = np.sqrt(np.clip(np.linalg.eigvalsh(r.T @ s2 @ r), 0, None)).sum()
    assert sqrtm_trace(s1, s2) == pytest.approx(ref, rel=1e-10)
    # one singular side: the roles are swapped (S2 is factored) and the result is unchanged
    x = rng.standard_normal((10, 48))
    s_low = np.cov(x, rowvar=False)
    w, v = np.linalg.eigh(s2)
    r = v * np.sqrt(w)
    ref = np.sqrt(np.clip(np.linalg.eigvalsh(r.T @ s_low @ r), 0, None)).sum()
    assert sqrtm_trace(s_low, s2) == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("n1,n2", [(30, 40), (40, 30), (30, 30), (200, 30), (30, 200), (200, 150)])
def test_sqrtm_trace_equals_the_nuclear_norm_of_the_feature_cross_product(n1, n2):
    """For sample covariances S_i = A_i^T A_i / (n_i - 1) of centred features A_i,
    tr sqrt(S1 S2) = ||A1 A2^T||_* / sqrt((n1 - 1)(n2 - 1)): an exact reference with no d x d
    eigenproblem, for full-rank and rank-deficient (n < d) sides alike. Features with a decaying
    spectrum, as real ones have, so that many eigenvalues of the product are tiny but real."""
    from gencli.metrics.stats import sqrtm_trace

    rng = np.random.default_rng(n1 * 1000 + n2)
    d = 96
    mix = rng.standard_normal((d, d)) * np.logspace(0, -4, d)[:, None]
    a1 = rng.standard_normal((n1, d)) @ mix
    a2 = (rng.standard_normal((n2, d)) * 1.3 + 0.1) @ mix
    a1, a2 = a1 - a1.mean(0), a2 - a2.mean(0)
    s1, s2 = a1.T @ a1 / (n1 - 1), a2.T @ a2 / (n2 - 1)
    ref = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    assert sqrtm_trace(s1, s2) == pytest.approx(ref, rel=1e-9)
    assert sqrtm_trace(s2, s1) == pytest.approx(ref, rel=1e-9)
    # with the sample counts: the side with fewer samples alone is decomposed, same answer
    assert sqrtm_trace(s1, s2, n1, n2) == pytest.approx(ref, rel=1e-9)
    assert sqrtm_trace(s2, s1, n2, n1) == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("n1,n2", [(30, 40), (96, 30), (97, 30), (200, 150)])
def test_running_stats_keep_a_low_rank_root_and_the_trace_uses_it(n1, n2, monkeypatch):
    """Up to d samples, RunningStats keeps the centred rows: ``root.T @ root`` is the covariance,
    and the Frechet distance then decomposes no d x d matrix (the nuclear norm of ``root1 @
    root2.T`` with both roots, an n x n problem with one); past d rows the root is dropped."""
    import torch

    from gencli.metrics.stats import RunningStats, frechet_distance

    rng = np.random.default_rng(n1 + 7 * n2)
    d = 96
    mix = rng.standard_normal((d, d)) * np.logspace(0, -4, d)[:, None]
    f1, f2 = rng.standard_normal((n1, d)) @ mix, (rng.standard_normal((n2, d)) * 1.3 + 0.1) @ mix
    stats = []
    for f in (f1, f2):
        rs = RunningStats()
        rs.CHUNK = 16
        for start in range(0, len(f), 7):
            rs.update(torch.from_numpy(f[start:start + 7]).float())
        stats.append(rs.finalize())
    a, b = stats
    for st, n in ((a, n1), (b, n2)):
        if n <= d:
            assert st.root.shape == (n, d)
            np.testing.assert_allclose(st.root.T @ st.root, st.sigma, rtol=0, atol=1e-12 * np.abs(st.sigma).max())
        else:
            assert st.root is None
    want = frechet_distance(a.mu, a.sigma, b.mu, b.sigma)  # no counts, no roots: both sides decomposed
    calls = []
    for name in ("eigh", "cholesky_ex"):
        fn = getattr(torch.linalg, name)
        monkeypatch.setattr(torch.linalg, name, lambda m, *args, _fn=fn, **kw: calls.append(m.shape[0]) or _fn(m, *args, **kw))
    got = frechet_distance(a.mu, a.sigma, b.mu, b.sigma, a.n, b.n, a.root, b.root)
    assert got == pytest.approx(want, rel=1e-9)
    if min(n1, n2) <= d:
        assert d not in calls  # no d x d Cholesky or eigendecomposition
    else:
        assert calls == [d, d]  # two full-rank sides: both Cholesky factors, as before


def test_merged_running_stats_drop_the_root():
    from gencli.metrics.stats import RunningStats

    rng = np.random.default_rng(0)
    a, b = RunningStats(), RunningStats()
    a.update(rng.standard_normal((10, 8)))
    b.update(rng.standard_normal((5, 8)))
    a.merge_state(*b.state())
    assert a.finalize().root is None  # a rank's rows are not in the merged state
    assert b.finalize().root.shape == (5, 8)


def test_sample_counts_spare_one_eigendecomposition(monkeypatch):
    """Both sides singular (n < d): with n1, n2 given, one d x d eigendecomposition (of the side
    with fewer samples), not two. When the other side has fewer distinct samples than its count
    says (here half its rows duplicated: rank 19, not 39), the reduced problem carries 20
    structurally zero eigenvalues at rounding level whose square roots add ~7e-9 of the trace
    (measured: 6.5e-9), against 2e-16 with both sides decomposed."""
    import torch

    from gencli.metrics.stats import sqrtm_trace

    rng = np.random.default_rng(5)
    d = 96
    mix = rng.standard_normal((d, d)) * np.logspace(0, -3, d)[:, None]
    a1 = rng.standard_normal((40, d)) @ mix
    a2 = np.repeat(rng.standard_normal((20, d)) @ mix, 2, axis=0) + 0.3  # 40 rows, 20 distinct
    a1, a2 = a1 - a1.mean(0), a2 - a2.mean(0)
    s1, s2 = a1.T @ a1 / 39, a2.T @ a2 / 39
    ref = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / 39
    sizes = []
    eigh = torch.linalg.eigh

    def counting(a, *args, **kwargs):
        sizes.append(a.shape[0])
        return eigh(a, *args, **kwargs)
    monkeypatch.setattr(torch.linalg, "eigh", counting)
    cholesky = torch.linalg.cholesky_ex
    tried = []
    monkeypatch.setattr(torch.linalg, "cholesky_ex", lambda a, **k: tried.append(1) or cholesky(a, **k))
    assert sqrtm_trace(s1, s2, 40, 40) == pytest.approx(ref, rel=3e-8)
    assert sizes == [d] and not tried  # 40 samples in 96-d: singular, no Cholesky attempted
    sizes.clear()
    assert sqrtm_trace(s1, s2) == pytest.approx(ref, rel=1e-12)  # counts unknown: both sides
    assert sizes == [d, d] and len(tried) == 2


def test_tiny_real_eigenvalues_of_the_reduced_problem_are_kept():
    """The regression a past commit fixed: a noise threshold (``d * eps * max``) on the reduced
    r x r eigenproblem drops eigenvalues of S1 S2 that are tiny but real. Here 8 strong feature
    directions and 248 weak ones (std 3e-4, so their product eigenvalues ~1e-14 of the largest sit
    just under such a threshold), 100 + 100 samples in 256-d (rank-deficient both sides, as 500 +
    500 Inception features are). Exact reference: the nuclear norm of A1 A2^T from the features.
    gencli: ~1e-9 relative on the trace, ~2e-8 on FID; with the threshold: 1.3e-6 and 2.8e-5."""
    from gencli.metrics.stats import sqrtm_trace

    rng = np.random.default_rng(0)
    d, n = 256, 100
    scale = np.full(d, 3e-4)
    scale[:8] = 1.0
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a1 = (rng.standard_normal((n, d)) * scale) @ q
    a2 = (rng.standard_normal((n, d)) * scale * 1.05 + 0.01) @ q
    mu1, mu2 = a1.mean(0), a2.mean(0)
    a1, a2 = a1 - mu1, a2 - mu2
    s1, s2 = a1.T @ a1 / (n - 1), a2.T @ a2 / (n - 1)
    exact_tr = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / (n - 1)
    assert sqrtm_trace(s1, s2) == pytest.approx(exact_tr, rel=2e-8)
    assert sqrtm_trace(s2, s1) == pytest.approx(exact_tr, rel=2e-8)
    exact_fid = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * exact_tr
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(exact_fid, rel=5e-7)
