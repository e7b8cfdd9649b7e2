"""The VAE's bounds against closed forms on a linear-Gaussian model, and the autoencoders' shapes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gencli.errors import UsageError
from gencli.models.vae.model import VAE, AutoEncoder, BetaVAE, DenoisingAutoEncoder

D, L = 4, 2  # 1x2x2 images, 2 latents
SIGMA = 0.5


class _Flat(nn.Module):
    def __init__(self, lin: nn.Linear, out_shape=None):
        super().__init__()
        self.lin, self.out_shape = lin, out_shape

    def forward(self, x):
        y = self.lin(x.flatten(1))
        return y if self.out_shape is None else y.view(-1, *self.out_shape)


def _linear_vae(w: torch.Tensor, b: torch.Tensor, enc_w: torch.Tensor, enc_b: torch.Tensor) -> VAE:
    """p(z) = N(0, I), p(x|z) = N(Wz + b, SIGMA^2 I), q(z|x) = N(enc_w x + enc_b) (mu; log var)."""
    torch.manual_seed(0)
    vae = VAE(VAE.config_for_data(4, 1, None, {"hidden": [1], "dense": 2, "latent_dim": L,
                                                "decoder": "gaussian"})).double()
    enc = nn.Linear(D, 2 * L).double()
    dec = nn.Linear(L, D).double()
    with torch.no_grad():
        enc.weight.copy_(enc_w), enc.bias.copy_(enc_b)
        dec.weight.copy_(w), dec.bias.copy_(b)
        vae.log_sigma.fill_(math.log(SIGMA))
    vae.encoder, vae.decoder = _Flat(enc), _Flat(dec, (1, 2, 2))
    return vae


def _log_marginal(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    cov = w @ w.T + SIGMA ** 2 * torch.eye(D, dtype=w.dtype)
    return torch.distributions.MultivariateNormal(b, cov).log_prob(x)


def _problem():
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)  # orthogonal columns
    b = torch.tensor([0.1, -0.2, 0.3, 0.0], dtype=torch.float64)
    x = torch.tensor([[0.5, -1.0, 0.2, 0.7], [-0.3, 0.4, 0.9, -0.5]], dtype=torch.float64)
    return w, b, x


def test_elbo_and_iwae_equal_log_p_x_with_the_true_posterior():
    w, b, x = _problem()
    # the true posterior: Sigma = (I + W^T W / s^2)^-1 (diagonal: W's columns are orthogonal)
    sigma_post = torch.linalg.inv(torch.eye(L, dtype=w.dtype) + w.T @ w / SIGMA ** 2)
    a = sigma_post @ w.T / SIGMA ** 2
    enc_w = torch.cat([a, torch.zeros(L, D, dtype=w.dtype)])
    enc_b = torch.cat([-a @ b, torch.log(torch.diagonal(sigma_post))])
    vae = _linear_vae(w, b, enc_w, enc_b)
    img = x.view(-1, 1, 2, 2)
    exact = _log_marginal(x, w, b)
    g = torch.Generator().manual_seed(0)
    lw = vae.log_weights(img, img, 5, g)
    assert torch.allclose(lw, exact.expand(5, -1), atol=1e-10)  # every weight is p(x) exactly
    # the analytic-KL ELBO is log p(x) in expectation (one sample: E_q log p(x|z) estimated)
    n = 20000
    elbo, _, _ = vae.elbo(img.repeat_interleave(n, 0), img.repeat_interleave(n, 0), g)
    est = elbo.view(2, n)
    assert ((est.mean(1) - exact).abs() < 4 * est.std(1) / math.sqrt(n)).all()


def test_elbo_matches_the_closed_form_for_any_gaussian_posterior():
    w, b, x = _problem()
    enc_w = torch.tensor([[0.3, 0.1, 0.0, -0.2], [0.0, 0.2, 0.1, 0.0],
                          [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    enc_b = torch.tensor([0.1, -0.1, math.log(0.3), math.log(0.8)], dtype=torch.float64)
    vae = _linear_vae(w, b, enc_w, enc_b)
    mu = x @ enc_w[:L].T + enc_b[:L]
    var = torch.exp(enc_b[L:])
    resid = x - mu @ w.T - b
    expected_rec = (-(resid ** 2).sum(1) - (w ** 2 * var).sum()) / (2 * SIGMA ** 2) \
        - D / 2 * math.log(2 * math.pi * SIGMA ** 2)
    kl = 0.5 * (mu ** 2 + var - 1 - torch.log(var)).sum(1)
    closed = expected_rec - kl
    n = 40000
    img = x.view(-1, 1, 2, 2).repeat_interleave(n, 0)
    elbo, rec, kl_model = vae.elbo(img, img, torch.Generator().manual_seed(1))
    assert torch.allclose(kl_model.view(2, n)[:, 0], kl, atol=1e-12)
    est = elbo.view(2, n)
    err = est.std(1) / math.sqrt(n)
    assert ((est.mean(1) - closed).abs() < 4 * err).all(), (est.mean(1), closed)
    # the IWAE bound is tighter than the ELBO and below log p(x)
    iwae = torch.logsumexp(vae.log_weights(img[::n], img[::n], 2000, torch.Generator().manual_seed(2)), 0) \
        - math.log(2000)
    exact = _log_marginal(x, w, b)
    assert (iwae > closed).all() and torch.allclose(iwae, exact, atol=0.05)


def test_iwae_bound_of_a_trained_shape_model_in_bits_per_dim_units():
    torch.manual_seed(0)
    vae = VAE(VAE.config_for_data(8, 1, None, {"hidden": [4, 8], "dense": 16, "latent_dim": 3})).eval()
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    ll1 = vae.log_likelihood(x, torch.Generator().manual_seed(0), samples=1)
    ll = vae.log_likelihood(x, torch.Generator().manual_seed(0), samples=50)
    assert ll.shape == (3,) and torch.isfinite(ll).all()
    assert (ll <= 0).all()  # log P(x) of a discrete distribution
    assert ll.mean() > ll1.mean()  # IWAE(50) tighter than one-sample ELBO on average


def test_bernoulli_decoder_has_no_8bit_likelihood():
    vae = VAE(VAE.config_for_data(8, 1, None, {"hidden": [4], "dense": 8, "latent_dim": 2, "decoder": "bernoulli"}))
    with pytest.raises(UsageError, match="Bernoulli"):
        vae.log_likelihood(torch.zeros(1, 1, 8, 8))


def test_traverse_grid_and_reconstruction_shapes():
    torch.manual_seed(0)
    vae = BetaVAE(BetaVAE.config_for_data(8, 1, None, {"hidden": [4], "dense": 8, "latent_dim": 3})).eval()
    assert vae.config["beta"] == 4.0 and vae.kl_weight(0) < vae.kl_weight(10_000) == 4.0
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    grid = vae.traverse(x, frames=5, span=2.0)
    assert grid.shape == (15, 1, 8, 8)
    # the middle frame of every row is the unmodified code (span symmetric, odd frames) ... except its own dim = 0
    assert vae.translate(x).shape == x.shape
    ends = list(vae.encode(x))
    frames = vae.interpolate(4, latents=ends)
    assert torch.allclose(frames[0], vae.decode(ends[0][None])[0]) and torch.allclose(frames[-1], vae.translate(x)[1])


def test_dae_denoises_through_translate_and_ae_is_deterministic():
    torch.manual_seed(0)
    dae = DenoisingAutoEncoder(DenoisingAutoEncoder.config_for_data(
        8, 1, None, {"hidden": [4], "dense": 8, "latent_dim": 2, "noise": "masking", "noise_level": 0.5}))
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    noisy = dae._corrupt(x, torch.Generator().manual_seed(0))
    assert ((noisy == -1) | (noisy == x)).all() and (noisy == -1).float().mean() > 0.3
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(dae.translate(x, g, add_noise=True), dae.translate(x, g))
    ae = AutoEncoder(AutoEncoder.config_for_data(8, 1, None, {"hidden": [4], "dense": 8, "latent_dim": 2}))
    assert torch.equal(ae.translate(x), ae.translate(x))
