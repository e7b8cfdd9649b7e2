"""gencli.models.gan: the adversarial losses and penalties against closed forms, the image pool,
and the PatchGAN discriminators' shapes and official state-dict keys."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gencli.errors import UsageError
from gencli.models.gan import losses as L
from gencli.models.gan.discriminators import (NLayerDiscriminator, PixelDiscriminator, build_discriminator,
                                              discriminator_config)
from gencli.models.gan.norms import BatchNorm2d, init_weights, norm_layer
from gencli.models.gan.pool import ImagePool


def t(*v, dtype=torch.float64):
    return torch.tensor(v, dtype=dtype)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# ------------------------------------------------------------------------------------------
# Losses
# ------------------------------------------------------------------------------------------


def test_gan_loss_keeps_the_translation_numerics():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 1, 6, 6, generator=g).to(torch.bfloat16)
    p = pred.float()
    for real, target in ((True, torch.ones_like(p)), (False, torch.zeros_like(p))):
        assert torch.equal(L.gan_loss(pred, real, "lsgan"), F.mse_loss(p, target))
        assert torch.equal(L.gan_loss(pred, real, "vanilla"), F.binary_cross_entropy_with_logits(p, target))
        assert L.gan_loss(pred, real, "lsgan").dtype == torch.float32
        assert L.gan_loss(pred.double(), real, "vanilla").dtype == torch.float32
    with pytest.raises(UsageError, match="unknown gan_mode 'hinge'; use lsgan or vanilla"):
        L.gan_loss(pred, True, "hinge")


def test_vanilla_losses_closed_form():
    r, f = t(2.0, -1.0), t(0.5, -3.0)
    assert float(L.vanilla_loss(t(0.0), True)) == pytest.approx(math.log(2))
    d = (softplus(-2.0) + softplus(1.0)) / 2 + (softplus(0.5) + softplus(-3.0)) / 2
    assert float(L.vanilla_d_loss(r, f)) == pytest.approx(d, rel=1e-6)
    # non-saturating: -log sigmoid(f); minimax: log(1 - sigmoid(f))
    sig = [1 / (1 + math.exp(-x)) for x in (0.5, -3.0)]
    assert float(L.nonsaturating_g_loss(f)) == pytest.approx(-sum(map(math.log, sig)) / 2, rel=1e-6)
    assert float(L.minimax_g_loss(f)) == pytest.approx(sum(math.log(1 - s) for s in sig) / 2, rel=1e-6)


def test_lsgan_wgan_hinge_closed_form():
    r, f = t(1.0, 3.0), t(0.0, 2.0)
    assert float(L.lsgan_d_loss(r, f)) == 4.0           # (0 + 4)/2 + (0 + 4)/2
    assert float(L.lsgan_g_loss(f)) == 1.0              # (1 + 1)/2
    r, f = t(1.0, 2.0, 3.0), t(-1.0, 0.5)
    assert float(L.wgan_critic_loss(r, f)) == -2.25     # -0.25 - 2
    assert float(L.wgan_g_loss(f)) == 0.25
    r, f = t(2.0, 0.5, -1.0), t(-2.0, 0.0, 1.5)
    # relu(1 - r) = 0, 0.5, 2; relu(1 + f) = 0, 1, 2.5
    assert float(L.hinge_d_loss(r, f)) == pytest.approx(2.5 / 3 + 3.5 / 3, abs=1e-15)
    assert float(L.hinge_g_loss(f)) == pytest.approx(0.5 / 3, abs=1e-15)


def test_mode_tables_and_patch_outputs():
    g = torch.Generator().manual_seed(1)
    r, f = torch.randn(3, 1, 4, 4, generator=g), torch.randn(3, 1, 4, 4, generator=g)
    for mode in L.MODES:
        assert torch.equal(L.discriminator_loss(r, f, mode), L.D_LOSSES[mode](r, f))
        assert torch.equal(L.generator_loss(f, mode), L.G_LOSSES[mode](f))
    assert L.G_LOSSES["vanilla"] is L.nonsaturating_g_loss
    # a PatchGAN's outputs: the mean over every patch of every image
    assert float(L.hinge_d_loss(r, f)) == pytest.approx(
        float(F.relu(1 - r.flatten()).mean() + F.relu(1 + f.flatten()).mean()))
    with pytest.raises(UsageError, match="unknown GAN loss 'wasserstein'"):
        L.discriminator_loss(r, f, "wasserstein")


# ------------------------------------------------------------------------------------------
# Penalties
# ------------------------------------------------------------------------------------------


def _linear_critic(w):
    return lambda x: x.flatten(1) @ w


def test_gradient_penalty_of_a_linear_critic_is_exact_and_trains_the_critic():
    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(5, 2, 3, 3, generator=g, dtype=torch.float64), torch.rand(5, 2, 3, 3, dtype=torch.float64)
    w = (0.3 * torch.randn(18, generator=g, dtype=torch.float64)).requires_grad_(True)
    gp = L.gradient_penalty(_linear_critic(w), real, fake, generator=g)
    n = float(w.detach().norm())
    assert float(gp.detach()) == pytest.approx((n - 1) ** 2, rel=1e-12)
    gp.backward()
    torch.testing.assert_close(w.grad, 2 * (n - 1) * w.detach() / n, rtol=1e-12, atol=0)
    assert float(L.gradient_penalty(_linear_critic(w), real, fake, center=0.0).detach()) == pytest.approx(n ** 2, rel=1e-12)


def test_gradient_penalty_draws_one_alpha_per_sample():
    real, fake = torch.ones(4, 3, 5, 5, dtype=torch.float64), torch.zeros(4, 3, 5, 5, dtype=torch.float64)

    def critic(x):  # grad = x = alpha everywhere in sample i: norm alpha_i * sqrt(75)
        return 0.5 * x.square().flatten(1).sum(1)

    gp = L.gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    alpha = torch.rand(4, 1, 1, 1, generator=torch.Generator().manual_seed(7)).double().flatten()
    assert len(set(alpha.tolist())) == 4
    assert float(gp.detach()) == pytest.approx(float((alpha * math.sqrt(75) - 1).square().mean()), rel=1e-12)
    with pytest.raises(UsageError, match="one shape"):
        L.gradient_penalty(critic, real, fake[:2])


def test_r1_penalty_closed_forms():
    g = torch.Generator().manual_seed(3)
    real = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    w = torch.randn(16, generator=g, dtype=torch.float64)
    assert float(L.r1_penalty(_linear_critic(w), real).detach()) == pytest.approx(float(w.square().sum()), rel=1e-12)
    quad = L.r1_penalty(lambda x: 0.5 * x.square().flatten(1).sum(1), real)
    assert float(quad.detach()) == pytest.approx(float(real.square().flatten(1).sum(1).mean()), rel=1e-12)
    lin = torch.nn.Linear(16, 1).double()  # R1 = ||W||^2: d/dW = 2W, nothing for the bias
    L.r1_penalty(lambda x: lin(x.flatten(1)), real).backward()
    torch.testing.assert_close(lin.weight.grad, 2 * lin.weight.detach(), rtol=1e-12, atol=0)
    assert lin.bias.grad is None or float(lin.bias.grad.abs().max()) == 0.0
    assert real.grad is None  # the penalty works on a detached copy


def test_penalties_on_a_patchgan_backpropagate():
    torch.manual_seed(0)
    d = init_weights(build_discriminator({"net": "basic", "input_nc": 3, "ndf": 4, "norm": "instance"}))
    real, fake = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    for pen in (L.gradient_penalty(d, real, fake), L.r1_penalty(d, real)):
        assert pen.dim() == 0 and torch.isfinite(pen) and float(pen.detach()) > 0
        d.zero_grad()
        pen.backward()
        # every parameter but the last bias (which does not change the input gradients) is trained
        grads = {k: p.grad for k, p in d.named_parameters()}
        assert grads.pop("model.11.bias") is None
        assert all(v is not None and float(v.abs().sum()) > 0 for v in grads.values())


# ------------------------------------------------------------------------------------------
# Image pool
# ------------------------------------------------------------------------------------------


def test_pool_fills_then_swaps_with_probability_one_half():
    pool = ImagePool(3, (1, 2, 2))
    x = torch.arange(8.0).reshape(8, 1, 1, 1).expand(8, 1, 2, 2).clone()
    assert torch.equal(pool.query(x[:2]), x[:2]) and int(pool.count) == 2
    torch.manual_seed(0)
    swapped = 0
    for i in range(2, 8):
        held = {float(v) for v in pool.images[:, 0, 0, 0]}
        out = float(pool.query(x[i:i + 1])[0, 0, 0, 0])
        if i == 2:
            assert out == 2.0  # the last free slot
        else:
            assert out == i or out in held
            swapped += out != i
        assert float(i) in {float(v) for v in pool.images[:, 0, 0, 0]} or out == i
    assert int(pool.count) == 3 and 0 < swapped < 5
    assert set(dict(pool.named_buffers())) == {"images", "count"}


def test_pool_resumes_exactly_and_checks_shapes():
    torch.manual_seed(1)
    a = ImagePool(4, (1, 2, 2))
    for _ in range(3):
        a.query(torch.randn(2, 1, 2, 2))
    b = ImagePool(4, (1, 2, 2))
    b.load_state_dict(a.state_dict())
    batch, rng = torch.randn(5, 1, 2, 2), torch.get_rng_state()
    out_a = a.query(batch)
    torch.set_rng_state(rng)
    assert torch.equal(b.query(batch), out_a) and torch.equal(a.images, b.images)
    with pytest.raises(UsageError, match="image pool holds"):
        a.query(torch.randn(1, 1, 4, 4))
    x = torch.randn(2, 1, 2, 2, requires_grad=True)
    assert not ImagePool(0, (1, 2, 2)).query(x).requires_grad


# ------------------------------------------------------------------------------------------
# Discriminators and norms
# ------------------------------------------------------------------------------------------


def test_discriminator_shapes():
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        assert build_discriminator({"net": "basic", "input_nc": 3, "ndf": 4})(x).shape == (2, 1, 30, 30)
        assert NLayerDiscriminator(3, ndf=4, n_layers=2)(x[:, :, :64, :64]).shape == (2, 1, 14, 14)
        assert build_discriminator({"net": "pixel", "ndf": 4})(x[:, :, :16, :8]).shape == (2, 1, 16, 8)


def test_discriminator_configs_and_official_keys():
    assert discriminator_config("basic") == {"arch": "n_layers", "input_nc": 3, "ndf": 64, "norm": "batch",
                                             "n_layers": 3}
    assert discriminator_config({"net": "pixel", "ndf": 8}) == {"arch": "pixel", "input_nc": 3, "ndf": 8,
                                                                "norm": "batch"}
    p = PixelDiscriminator(3, 4, "batch").state_dict()
    assert list(p) == ["net.0.weight", "net.0.bias", "net.2.weight", "net.3.weight", "net.3.bias",
                       "net.3.running_mean", "net.3.running_var", "net.3.num_batches_tracked", "net.5.weight"]
    inst = NLayerDiscriminator(3, 4, 3, "instance").state_dict()
    assert list(inst) == [f"model.{i}.{k}" for i in (0, 2, 5, 8, 11) for k in ("weight", "bias")]
    with pytest.raises(UsageError, match="unknown discriminator 'patch'"):
        discriminator_config("patch")
    with pytest.raises(UsageError, match="unknown discriminator architecture"):
        discriminator_config({"arch": "global"})
    with pytest.raises(UsageError, match="unknown norm 'group'"):
        build_discriminator({"norm": "group"})


def test_norm_layers():
    assert norm_layer("instance", 4).state_dict() == {}
    bn = norm_layer("batch", 4)
    assert isinstance(bn, BatchNorm2d)
    x = torch.randn(3, 4, 5, 5)
    bn.eval()
    bn.per_image = True
    torch.testing.assert_close(bn(x)[1:2], bn(x[1:2]))
    torch.testing.assert_close(bn(x), F.instance_norm(x, eps=bn.eps))
