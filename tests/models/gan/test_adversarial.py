"""The adversarial families: each paper's defaults, the options that change training (n_critic,
clipping, penalties, conditioning, tricks), the sampling extras (truncation, arithmetic, InfoGAN
traversal, StyleGAN mixing and w interpolation) and their figures through the generic commands."""

from __future__ import annotations

import pytest
import torch

from gencli import registry
from gencli.errors import UsageError
from gencli.models.gan import toy, tricks
from gencli.models.gan.adversarial import (ACGAN, CGAN, DCGAN, DRAGAN, GAN, LSGAN, SNGAN, WGAN, WGANGP,
                                           parse_arithmetic)
from gencli.models.gan.infogan import InfoGAN
from gencli.models.gan.stylegan import StyleGAN, mix_range, parse_mix
from gencli.training import run as runs

TINY = {"generator": {"width": 4}, "discriminator": {"width": 4}, "z_dim": 8}


def tiny(cls, num_classes=None, **over):
    torch.manual_seed(0)
    cfg = cls.config_for_data(8, 1, num_classes, {**TINY, **over})
    return cls(cfg)


def take_steps(model, steps, n=4, num_classes=3):
    ctx = toy._Ctx(model.configure_optimizers())
    model.train()
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        x = torch.rand(n, *model.data_shape, generator=g) * 2 - 1
        y = torch.randint(num_classes, (n,), generator=g)
        out = model.train_step((x, y), step, ctx)
        assert all(torch.isfinite(v) for v in out.values()), out
    return out


def test_family_defaults_follow_the_papers():
    assert GAN(GAN.config_for_data(8, 1, None)).config["generator"]["arch"] == "mlp"
    w = WGAN.config_for_data(8, 1, None)
    assert (w["loss"], w["clip"], w["n_critic"], w["optimizer"]["kind"], w["optimizer"]["lr"]) == \
        ("wgan", 0.01, 5, "rmsprop", 5e-5)
    gp = WGANGP.config_for_data(8, 1, None)
    assert (gp["penalty"], gp["penalty_weight"], gp["n_critic"], gp["discriminator"]["norm"]) == ("gp", 10.0, 5, "none")
    sn = SNGAN.config_for_data(8, 1, None)
    assert sn["loss"] == "hinge" and sn["discriminator"]["spectral_norm"] and sn["optimizer"]["betas"] == [0.0, 0.9]
    assert LSGAN.config_for_data(8, 1, None)["loss"] == "lsgan"
    assert DRAGAN.config_for_data(8, 1, None)["penalty"] == "dragan"
    # only the conditional families take the data's labels
    assert DCGAN.config_for_data(8, 1, 10)["num_classes"] is None
    assert CGAN.config_for_data(8, 1, 10)["conditioning"] == "concat"
    assert ACGAN.config_for_data(8, 1, 10)["num_classes"] == 10


def test_wgan_clips_the_critic_and_steps_g_every_n_critic():
    m = tiny(WGAN)
    g0 = {k: v.clone() for k, v in m.G.named_parameters()}
    take_steps(m, 4)
    assert all(torch.equal(g0[k], v) for k, v in m.G.named_parameters())  # 4 D steps, no G step yet
    assert all(float(p.detach().abs().max()) <= 0.01 + 1e-9 for p in m.D.parameters())
    take_steps(m, 5)  # steps 0..4 again: step 4 takes the G step
    assert not all(torch.equal(g0[k], v) for k, v in m.G.named_parameters())
    assert isinstance(m.configure_optimizers()["D"], torch.optim.RMSprop)


@pytest.mark.parametrize("cls", [GAN, WGANGP, SNGAN, DRAGAN, LSGAN])
def test_penalties_and_losses_train(cls):
    out = take_steps(tiny(cls, n_critic=1), 2)
    if cls.DEFAULTS.get("penalty") in ("gp", "dragan"):
        assert cls.DEFAULTS["penalty"] in out and float(out[cls.DEFAULTS["penalty"]]) >= 0


def test_minimax_and_r1_options():
    out = take_steps(tiny(DCGAN, loss="minimax", penalty="r1"), 1)
    assert float(out["r1"]) >= 0 and float(out["G"]) <= 0  # log(1 - D(G(z))) is negative


@pytest.mark.parametrize("cls,key", [(CGAN, None), (ACGAN, "aux_D")])
def test_conditional_families_use_labels(cls, key):
    m = tiny(cls, num_classes=3)
    out = take_steps(m, 1)
    assert key is None or key in out
    m.eval()
    with pytest.raises(UsageError):
        m.sample(2, torch.Generator().manual_seed(0), class_labels=[5, 5])
    x = m.generate(3, seed=0, class_labels=[0, 1, 2])
    assert x.shape == (3, 1, 8, 8)


@pytest.mark.parametrize("aux_fakes", [True, False])
def test_acgan_class_head_on_reals_only_when_asked(aux_fakes):
    import copy

    import torch.nn.functional as F

    m = tiny(ACGAN, num_classes=3, aux_fakes=aux_fakes)
    before = copy.deepcopy(m).train()
    ctx = toy._Ctx(m.configure_optimizers())
    m.train()
    x = torch.rand(4, *m.data_shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    y = torch.tensor([0, 1, 2, 0])
    torch.manual_seed(5)
    out = m.train_step((x, y), 0, ctx)
    with torch.no_grad():
        real_ce = F.cross_entropy(before.D.aux(before.D.features(x)), y)
    if aux_fakes:
        assert abs(float(out["aux_D"]) - float(real_ce)) > 1e-4  # half of it is the fakes' term
    else:
        assert float(out["aux_D"]) == pytest.approx(float(real_ce), rel=1e-5)


def test_tricks_are_wired_and_train_options_reach_the_config(tmp_path):
    spec = registry.get_family("dcgan")
    prepared = runs.prepare(spec, tmp_path / "run", steps=2, data="synthetic:8", image_size=8, config=TINY,
                            options={"label_smoothing": 0.1, "instance_noise": 0.1, "instance_noise_steps": 10,
                                     "augment": "color,translation,cutout", "n_critic": 2, "lr_d": 4e-4},
                            train={"batch_size": 4, "sample_n": 0})
    cfg = prepared.model.config
    assert (cfg["label_smoothing"], cfg["instance_noise"], cfg["n_critic"], cfg["optimizer"]["lr_d"]) == (0.1, 0.1, 2, 4e-4)
    assert prepared.trainer.optimizers["D"].param_groups[0]["lr"] == 4e-4  # TTUR
    assert prepared.trainer.cfg.ema_decay is None and prepared.trainer.cfg.grad_clip is None  # off by default
    prepared.trainer.fit()
    with pytest.raises(UsageError):
        runs.prepare(spec, tmp_path / "bad", steps=2, data="synthetic:8", image_size=8, options={"augment": "blur"})


def test_trick_functions():
    r, f = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    want = torch.nn.functional.binary_cross_entropy_with_logits(r, torch.full_like(r, 0.9)) + \
        torch.nn.functional.softplus(f).mean()
    assert torch.allclose(tricks.smoothed_d_loss(r, f, "vanilla", 0.1), want)
    assert tricks.instance_noise_std(5, 0.2, 10) == pytest.approx(0.1) and tricks.instance_noise_std(20, 0.2, 10) == 0
    x = torch.rand(3, 1, 8, 8, requires_grad=True)
    y = tricks.diff_augment(x * 2 - 1, "color,translation,cutout")
    y.sum().backward()
    assert y.shape == x.shape and x.grad is not None
    z = tricks.truncated_normal((100, 8), 0.5, torch.Generator().manual_seed(0))
    assert float(z.abs().max()) <= 0.5
    assert torch.equal(z, tricks.truncated_normal((100, 8), 0.5, torch.Generator().manual_seed(0)))


def test_truncation_and_arithmetic():
    m = tiny(DCGAN).eval()
    g = torch.Generator().manual_seed(0)
    assert float(m.prior(50, g, truncation=0.7).abs().max()) <= 0.7
    assert parse_arithmetic("1,2,3 - 4,5,6 + 7,8,9") == [(1, [1, 2, 3]), (-1, [4, 5, 6]), (1, [7, 8, 9])]
    for bad in ("", "1,2 -", "- 1", "1,a"):
        with pytest.raises(UsageError):
            parse_arithmetic(bad)
    row = m.interpolate(2, [], arithmetic="1,2 - 3 + 4")
    assert row.shape == (4, 1, 8, 8)
    z = lambda s: m.prior(1, torch.Generator().manual_seed(s))  # noqa: E731
    want = m.decode((z(1) + z(2)) / 2 - z(3) + z(4))
    assert torch.allclose(row[3:], want)


def test_infogan_codes_and_traversal():
    m = tiny(InfoGAN)
    assert m.latent_dim == 8 + 10 + 2 and m.q_dim == 12
    out = take_steps(m, 2)
    assert "info" in out
    m.eval()
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    grid = m.interpolate(5, gens, traverse_code="c1")
    assert grid.shape == (2, 10, 1, 8, 8)
    assert m.interpolate(5, gens, traverse_code="c3").shape == (2, 5, 1, 8, 8)
    with pytest.raises(UsageError):
        m.interpolate(5, gens, traverse_code="c4")
    rows = m.traverse(frames=10, generators=[torch.Generator().manual_seed(0)])  # rows c1 (10 categories), c2, c3
    assert rows.shape == (3, 10, 1, 8, 8)
    lat = m.prior(1, torch.Generator().manual_seed(0))[0]
    for j in range(10):  # the categorical row: category j with the seed's z and continuous codes
        want = lat.clone()
        want[8:18] = torch.nn.functional.one_hot(torch.tensor(j), 10).float()
        assert torch.allclose(rows[0, j], m.decode(want[None])[0])
    want = lat.clone()
    want[18] = 2.0  # c2 at the end of its sweep
    assert torch.allclose(rows[1, -1], m.decode(want[None])[0])


def test_stylegan_mixing_truncation_and_w_space():
    m = tiny(StyleGAN, generator={"width": 4, "w_dim": 8})
    take_steps(m, 2)
    assert float(m.G.w_avg.abs().sum()) > 0  # tracked in training
    m.eval()
    assert m.G.num_ws == 4 and mix_range(4, "coarse") == (0, 1) and mix_range(4, "fine") == (3, 4)
    assert parse_mix("1,2:3") == ([1, 2], [3])
    grid = m.sample(1, mix="1,2:3,4,5", mix_layers="fine")
    assert grid.shape == (3, 4, 1, 8, 8)
    assert torch.allclose(grid[0, 1:], m.decode(m._seed_z([3, 4, 5])), atol=1e-6)
    assert torch.allclose(grid[1:, 0], m.decode(m._seed_z([1, 2])), atol=1e-6)
    z = m.prior(4, torch.Generator().manual_seed(0))
    ws = m._ws(z)
    assert torch.allclose(m._ws(z, 0.0), m.G.w_avg.expand_as(ws))  # psi 0: the mean w
    path = m.interpolate(4, [torch.Generator().manual_seed(s) for s in (1, 2)], space="w")
    assert torch.allclose(path[[0, 3]], m.decode(m._seed_z([1, 2])), atol=1e-6)
    with pytest.raises(UsageError):
        m.sample(1, mix="1,2")


def test_figures_through_the_generic_commands(tmp_path, capsysbinary, monkeypatch):
    from PIL import Image

    from gencli.checkpoints import save_checkpoint
    from gencli.cli.app import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name, cls, over in (("stylegan", StyleGAN, {"generator": {"width": 4, "w_dim": 8}}), ("infogan", InfoGAN, {})):
        config, tensors = tiny(cls, **over).export()
        save_checkpoint(tmp_path / f"{name}.safetensors", tensors, {"family": name, "config": config,
                                                                      "image_size": 8, "channels": 1})
    assert run(["-q", "sample", "stylegan", "--weights", "stylegan.safetensors", "--mix", "1,2:3,4,5",
                "--mix-layers", "middle", "-o", "mix.png"]) == 0
    assert Image.open("mix.png").size == (4 * 10 + 2, 3 * 10 + 2)  # 4 columns, 3 rows of 8 px + padding
    assert run(["-q", "interpolate", "infogan", "--weights", "infogan.safetensors", "--seeds", "0,1,2",
                "--traverse-code", "c1", "-o", "traverse.png"]) == 0
    assert Image.open("traverse.png").size == (10 * 10 + 2, 3 * 10 + 2)
    assert run(["-q", "interpolate", "infogan", "--weights", "infogan.safetensors", "--traverse", "--frames", "10",
                "-o", "codes.png"]) == 0
    assert Image.open("codes.png").size == (10 * 10 + 2, 3 * 10 + 2)  # rows c1, c2, c3
    assert run(["-q", "interpolate", "stylegan", "--weights", "stylegan.safetensors", "--space", "w",
                "--frames", "3", "-o", "w.png"]) == 0
    assert run(["-q", "interpolate", "stylegan", "--weights", "stylegan.safetensors",
                "--arithmetic", "1,2 - 3 + 4", "-o", "arith.png"]) == 0
    assert Image.open("arith.png").size == (4 * 10 + 2, 12)
    capsysbinary.readouterr()
    assert run(["sample", "infogan", "--weights", "infogan.safetensors", "--mix", "1:2"]) == 2  # not infogan's
    assert "no option --mix" in capsysbinary.readouterr().err.decode()


BUNDLED = [n for n, spec in registry.FAMILIES.items()
           if spec.target.startswith("gencli.models.gan.") and spec.default_checkpoint and n == spec.family]


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_defaults_sample_offline(name, monkeypatch):
    import gencli

    spec = registry.get_family(name)
    from gencli.paths import bundled_weights_dir

    file = spec.checkpoint(spec.default_checkpoint).source.split(":", 1)[1]
    if not (bundled_weights_dir() / file).is_file():  # an install from another checkout (as test_metrics_fmnist)
        pytest.skip(f"{file} is not in the installed bundled weights ({bundled_weights_dir()})")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = gencli.load(name)
    x = model.generate(4, seed=0, class_labels=[9] * 4 if model.num_classes else None)
    assert x.shape == (4, 1, 28, 28) and torch.equal(x, model.generate(4, seed=0, class_labels=[9] * 4
                                                                       if model.num_classes else None))


def test_minibatch_std_sees_a_collapsed_batch():
    from gencli.models.gan.networks import MinibatchStd

    x = torch.randn(8, 3, 4, 4)
    y = MinibatchStd(4)(x)
    assert y.shape == (8, 4, 4, 4) and torch.equal(y[:, :3], x)
    group = x[[1, 3, 5, 7]]  # the group of sample 1 (view(4, 2): samples j, j + 2, j + 4, j + 6)
    assert float(y[1, 3, 0, 0]) == pytest.approx(float(group.var(0, unbiased=False).add(1e-8).sqrt().mean()), rel=1e-6)
    same = MinibatchStd(4)(x[:1].expand(8, -1, -1, -1))
    assert float(same[:, 3].max()) < 1e-3  # identical samples: no spread
    m = tiny(ACGAN, num_classes=3, discriminator={"width": 4, "minibatch_std": 4})
    take_steps(m, 2, n=8)


def test_every_gan_family_has_a_bundled_default():
    """`gencli sample FAMILY` works offline right after install, for every adversarial family."""
    gan_families = [n for n, spec in registry.FAMILIES.items()
                    if spec.target.startswith("gencli.models.gan.") and n == spec.family]
    assert len(gan_families) == 11
    assert sorted(BUNDLED) == sorted(gan_families)
    for name in gan_families:
        ref = registry.FAMILIES[name].checkpoint("fashion-mnist")
        assert ref.source == f"bundled:{name}-fashion-mnist.safetensors"
