"""VQ-VAE: the straight-through estimator carries the decoder's gradient to the encoder; the
codebook losses; EMA updates and dead-code restarts; the prior over codes is causal."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gencli.models.vae.vqvae import VQVAE

_CFG = {"hidden": [4, 8], "codebook_size": 8, "code_dim": 3,
        "prior": {"hidden": 4, "layers": 2, "kernel": 3, "first_kernel": 3, "head": 4, "embed": 3}}


def _model(**over) -> VQVAE:
    torch.manual_seed(0)
    return VQVAE(VQVAE.config_for_data(8, 1, None, {**_CFG, **over}))


def test_gradients_reach_the_encoder_through_the_straight_through_estimator():
    m = _model(ema=False)
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    z = m.encoder(x)
    z.retain_grad()
    zq, codes, _ = m.quantizer(z)
    zq.retain_grad()
    F.mse_loss(m.decoder(zq), x).backward()
    # straight-through: dL/dz_e is exactly dL/dz_q, and the encoder's weights get it
    assert torch.equal(z.grad, zq.grad) and z.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.encoder.parameters())
    # the quantised values are codebook vectors
    assert torch.allclose(zq, m.quantizer.lookup(codes), atol=1e-6)


def test_codebook_and_commitment_losses_move_the_right_things():
    m = _model(ema=False)
    z = torch.randn(2, 3, 2, 2, requires_grad=True)
    _, _, (cb, commit) = m.quantizer(z)
    cb.backward(retain_graph=True)
    assert (z.grad is None or not z.grad.any()) and m.quantizer.codebook.grad.abs().sum() > 0  # codebook loss: codebook only
    m.quantizer.codebook.grad = None
    z.grad = None
    commit.backward()
    cg = m.quantizer.codebook.grad
    assert z.grad.abs().sum() > 0 and (cg is None or not cg.any())  # commitment: encoder only


def test_ema_codebook_follows_the_encodings_and_dead_codes_restart():
    m = _model(ema=True, ema_decay=0.5, restart_below=0.5)
    q = m.quantizer.train()
    z = torch.randn(1, 3, 4, 4)
    before = q.codebook.detach().clone()
    for _ in range(3):
        q(z)
    assert not torch.equal(before, q.codebook)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 3)
    # every code is now either near the mean of its encodings or restarted at an encoding
    d = torch.cdist(q.codebook.detach(), flat).min(1).values
    assert (d < 3).all()


def test_sampling_from_the_prior_and_reconstruction():
    m = _model().eval()
    x = m.sample(2, torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 8, 8) and x.abs().max() <= 1
    assert m.translate(torch.zeros(3, 1, 8, 8)).shape == (3, 1, 8, 8)
    codes = torch.randint(8, (1, 2, 2))
    emb = m.code_embed(codes).permute(0, 3, 1, 2).detach().requires_grad_(True)
    m.prior_net(emb)[0, :, 0, 1].sum().backward()
    assert (emb.grad[0, :, 0, 1:] == 0).all() and (emb.grad[0, :, 1] == 0).all()


def test_gumbel_relaxation_trains_the_encoder_and_decodes_hard_codes():
    m = _model(quantizer="gumbel")
    assert m.tau(0) == 1.0 and abs(m.tau(10_000) - 1 / 16) < 1e-9 and m.tau(0) > m.tau(1000) > m.tau(2000)
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    logits = m.encoder(x)
    assert logits.shape[1] == 8  # K logits per position
    z, codes, kl = m.quantizer(logits, 0.5)
    (F.mse_loss(m.decoder(z), x) + kl).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.encoder.parameters())
    assert kl >= 0
    m.eval()
    assert m.translate(x).shape == x.shape and m.sample(1, torch.Generator().manual_seed(0)).shape == (1, 1, 8, 8)
