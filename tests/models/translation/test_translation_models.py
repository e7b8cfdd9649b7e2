"""CycleGAN / pix2pix families: any-size inference (pad + crop, tiles), channel conversion,
directions, test-time behaviour, training steps through the one trainer, and their data."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from PIL import Image

from gencli.checkpoints import load_checkpoint
from gencli.errors import InputError, UsageError
from gencli.io.synthetic import synthetic_shapes
from gencli.io.tensor_dataset import TensorImageDataset
from gencli.models.translation.common import linear_decay
from gencli.models.translation.cyclegan import CycleGAN
from gencli.models.translation.data import (PairedDataset, UnpairedDataset, domain_dataset, edges,
                                            paired_training_data, unpaired_training_data)
from gencli.models.translation.pix2pix import Pix2Pix
from gencli.models.translation.tiling import pad_reflect, run_padded, run_tiled
from gencli.training.trainer import MODEL_FILE, TrainConfig, Trainer

TINY_G = {"ngf": 4, "n_blocks": 2}
TINY_D = {"ndf": 4, "n_layers": 2}


def tiny_cyclegan(size=16, ca=1, cb=1, **over):
    torch.manual_seed(0)
    cfg = CycleGAN.config_for_data(size, ca, None, {"channels_b": cb, "generator": TINY_G,
                                                    "discriminator": TINY_D, "pool_size": 4, **over})
    return CycleGAN(cfg)


def tiny_pix2pix(size=16, ci=1, co=1, **over):
    torch.manual_seed(0)
    cfg = Pix2Pix.config_for_data(size, ci, None, {"output_channels": co, "generator": {"ngf": 4},
                                                   "discriminator": TINY_D, **over})
    return Pix2Pix(cfg)


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------------------------------
# Padding and tiling
# ------------------------------------------------------------------------------------------


def test_reflect_padding_any_amount():
    x = torch.arange(3.0).view(1, 1, 1, 3)
    assert pad_reflect(x, 0, 0, 2, 2).flatten().tolist() == [2, 1, 0, 1, 2, 1, 0]
    assert pad_reflect(x, 0, 0, 5, 0).flatten().tolist() == [1, 0, 1, 2, 1, 0, 1, 2]
    one = torch.ones(1, 1, 1, 1)
    assert pad_reflect(one, 3, 4, 2, 1).shape == (1, 1, 8, 4)


def test_padded_run_gives_the_input_size_and_is_exact_for_valid_sizes():
    m = tiny_cyclegan()
    for h, w in ((13, 21), (1, 1), (5, 64), (28, 28)):
        assert m.translate(rand(2, 1, h, w)).shape == (2, 1, h, w)
    x = rand(1, 1, 16, 24)
    with torch.inference_mode():
        m.G_A.eval()
        direct = m.G_A(x)
    assert torch.equal(m.translate(x, fast=False), direct)
    torch.testing.assert_close(m.translate(x), direct, rtol=0, atol=1e-4)  # the fast path: NHWC, own norms
    p = tiny_pix2pix(size=32)
    assert p.G.divisor == 32
    assert p.translate(rand(1, 1, 7, 40)).shape == (1, 1, 7, 40)


def test_tiles_are_blended_exactly_for_local_ops_and_bound_the_work():
    seen = []

    def net(t):
        seen.append(tuple(t.shape[-2:]))
        return t * 2 + 1

    x = rand(2, 3, 50, 70)
    y = run_tiled(net, x, tile=16, multiple=4, overlap=4)
    torch.testing.assert_close(y, x * 2 + 1)
    assert max(seen) == (16, 16) and len(seen) > 10
    # a 3x3 average: tiles differ only near their borders, which the ramps mostly hide
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect", bias=False)
    torch.nn.init.constant_(conv.weight, 1 / 9)
    img = rand(1, 1, 40, 40)
    with torch.no_grad():
        full = run_padded(conv, img, 4)
        tiled = run_tiled(conv, img, tile=16, multiple=4, overlap=8)
    assert (full - tiled).abs().mean() < 0.02


def test_translate_tiles_a_large_image():
    m = tiny_cyclegan()
    x = rand(1, 1, 45, 67)
    y = m.translate(x, tile=16, overlap=4)
    assert y.shape == x.shape and torch.isfinite(y).all()
    with pytest.raises(UsageError, match="smaller than this generator's minimum"):
        m.translate(x, tile=2)
    with pytest.warns(UserWarning, match="rounded down to 16"):
        m.translate(x, tile=18)


# ------------------------------------------------------------------------------------------
# Inference options
# ------------------------------------------------------------------------------------------


def test_channels_are_converted_with_a_note():
    m = tiny_cyclegan(ca=3, cb=3)
    with pytest.warns(UserWarning, match="takes RGB images: converting the greyscale input"):
        y = m.translate(rand(1, 1, 8, 8))
    assert y.shape == (1, 3, 8, 8)
    g = tiny_cyclegan(ca=1, cb=1)
    with pytest.warns(UserWarning, match="takes greyscale images: converting the RGB input"):
        assert g.translate(rand(1, 3, 8, 8)).shape == (1, 1, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g.translate(rand(1, 1, 8, 8))


def test_directions_and_size():
    m = tiny_cyclegan(ca=1, cb=3)
    assert m.translate(rand(1, 1, 8, 8)).shape == (1, 3, 8, 8)
    assert m.translate(rand(1, 3, 8, 8), direction="BtoA").shape == (1, 1, 8, 8)
    assert m.translate(rand(1, 1, 10, 14), size=12).shape == (1, 3, 12, 12)
    with pytest.raises(UsageError, match="AtoB or BtoA"):
        m.translate(rand(1, 1, 8, 8), direction="sideways")
    p = tiny_pix2pix()
    with pytest.raises(UsageError, match="maps one way only"):
        p.translate(rand(1, 1, 8, 8), direction="BtoA")


def test_per_image_batchnorm_makes_results_batch_independent():
    p = tiny_pix2pix(size=64, inference={"per_image_norm": True, "dropout": True})
    assert p.config["generator"]["num_downs"] == 6  # one level with dropout
    x = rand(3, 1, 64, 64)
    both = p.translate(x, generator=torch.Generator().manual_seed(3), dropout=False)
    one = p.translate(x[1:2], dropout=False)
    torch.testing.assert_close(both[1:2], one, atol=1e-5, rtol=0)
    a = p.translate(x)
    assert torch.equal(a, p.translate(x))  # dropout masks seeded (0) by default
    assert not torch.equal(a, p.translate(x, generator=torch.Generator().manual_seed(1)))
    assert p.G.training  # translate() leaves the module's mode as it found it


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------


def test_linear_decay():
    assert linear_decay(0, 100, 0.5) == 1.0 and linear_decay(49, 100, 0.5) == 1.0
    assert linear_decay(50, 100, 0.5) == 1.0
    assert 0 < linear_decay(99, 100, 0.5) < 0.05
    assert linear_decay(75, 100, 0.5) == pytest.approx(1 - 25 / 51)


def _unpaired(n=12, size=16):
    a = synthetic_shapes(n, size=size, channels=1, seed=0, num_classes=1)
    b = synthetic_shapes(n + 3, size=size, channels=1, seed=1, num_classes=2)
    return UnpairedDataset(a, b)


def test_cyclegan_trains_and_resumes_exactly(tmp_path):
    ds = _unpaired()

    def trainer(run, steps):
        return Trainer(tiny_cyclegan(), ds, run, TrainConfig(steps=steps, batch_size=4, grad_clip=None,
                                                              ema_decay=None, log_every=1, save_every=3))

    straight = trainer(tmp_path / "a", 5)
    straight.fit()
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert set(log[0]) >= {"G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B", "D_A", "D_B"}
    assert all(v == v for rec in log for v in rec.values())  # no NaN
    assert int(straight.model.fake_A_pool.count) == 4  # the pool filled up
    first = trainer(tmp_path / "b", 5)  # interrupted before step 4 (same total: same lr schedule)
    real_step = first.model.train_step

    def interrupt(batch, step, ctx):
        if step == 3:
            raise KeyboardInterrupt
        return real_step(batch, step, ctx)

    first.model.train_step = interrupt
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed = trainer(tmp_path / "b", 5)
    resumed.load()
    assert resumed.step == 3
    resumed.fit()
    a, b = straight.inference_state_dict(), resumed.inference_state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the run's model file is a loadable cyclegan checkpoint that translates both ways
    ck = load_checkpoint(tmp_path / "a" / MODEL_FILE)
    m = CycleGAN.from_config(ck.config)
    m.load_state_dict(ck.tensors)
    assert m.translate(rand(1, 1, 16, 16), direction="BtoA").shape == (1, 1, 16, 16)
    cfg, sd = m.export()
    slim = CycleGAN(cfg)
    slim.load_state_dict(sd)
    assert not hasattr(slim, "D_A") and all(k.startswith(("G_A.", "G_B.")) for k in sd)


def test_pix2pix_trains_with_padding(tmp_path):
    src = synthetic_shapes(10, size=12, channels=1, seed=0)
    ds = PairedDataset("edges", source=src, name="edges:synthetic")
    model = tiny_pix2pix(size=12)
    assert model.config["generator"]["num_downs"] == 5  # 12 px pads to 32 inside the step
    before = model.G.model.model[0].weight.detach().clone()
    t = Trainer(model, ds, tmp_path, TrainConfig(steps=3, batch_size=4, grad_clip=None, ema_decay=None,
                                                 log_every=1, save_every=100))
    t.fit()
    rec = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
    assert set(rec) >= {"G_GAN", "G_L1", "D_real", "D_fake"}
    assert not torch.equal(before, model.G.model.model[0].weight.detach())


def test_training_needs_the_right_batches_and_parts():
    m = tiny_cyclegan()
    with pytest.raises(UsageError, match="--data-a"):
        m.train_step((rand(2, 1, 16, 16), torch.zeros(2, dtype=torch.long)), 0, None)
    one_way = CycleGAN.inference_config({"arch": "resnet", "n_blocks": 1, "ngf": 4, "input_nc": 1, "output_nc": 1})
    with pytest.raises(UsageError, match="no discriminators"):
        CycleGAN(one_way).configure_optimizers()


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------


def test_unpaired_batches():
    ds = _unpaired()
    assert len(ds) == 15 and ds.config_overrides["channels_b"] == 1
    torch.manual_seed(0)
    a, b = ds.batch(torch.tensor([0, 13, 2]))
    assert a.shape == b.shape == (3, 1, 16, 16) and a.dtype == torch.float32
    with pytest.raises(UsageError, match="--size"):
        UnpairedDataset(synthetic_shapes(2, size=8), synthetic_shapes(2, size=16))


def test_domain_class_filter():
    imgs = torch.randint(0, 255, (6, 1, 4, 4), dtype=torch.uint8)
    ds = TensorImageDataset(imgs, torch.tensor([0, 1, 2, 1, 1, 0]), ["T-shirt/top", "Ankle boot", "Bag"], "toy")
    from gencli.models.translation.data import _filter_class

    sub = _filter_class(ds, "ankle-boot", "toy:ankle-boot")
    assert len(sub) == 3 and torch.equal(sub.images, imgs[[1, 3, 4]])
    assert len(_filter_class(ds, "2", "toy:2")) == 1
    with pytest.raises(UsageError, match="no class 'shoe'"):
        _filter_class(ds, "shoe", "toy:shoe")


def test_fashion_mnist_domains():
    ds = domain_dataset("fashion-mnist:Sneaker", split="test")
    assert len(ds) == 1000 and ds.channels == 1 and ds.image_size == 28
    data = unpaired_training_data(data_a="fashion-mnist:sneaker", data_b="fashion-mnist:ankle boot",
                                  split="test")
    assert data.config_overrides["domains"] == {"A": "fashion-mnist:Sneaker", "B": "fashion-mnist:Ankle boot"}
    with pytest.raises(UsageError, match="--data-a"):
        CycleGAN.training_data("fashion-mnist")


def test_edges_detector_is_fixed():
    x = -torch.ones(1, 1, 12, 12)
    x[..., 3:9, 3:9] = 1.0
    e = edges(x)
    assert e.shape == x.shape and set(e.unique().tolist()) == {-1.0, 1.0}
    assert e[0, 0, 0, 0] == 1.0 and e[0, 0, 6, 6] == 1.0  # flat areas are white
    assert e[0, 0, 3, 6] == -1.0  # the square's border is a black line
    assert torch.equal(edges(x.repeat(1, 3, 1, 1)), e)


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_paired_layouts(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    for i in range(3):
        a = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        b = 255 - a
        _png(tmp_path / "aligned" / "train" / f"{i}.png", np.concatenate([a, b], axis=1))
        _png(tmp_path / "folders" / "A" / f"{i}.png", a)
        _png(tmp_path / "folders" / "B" / f"{i}.jpg" if False else tmp_path / "folders" / "B" / f"{i}.png", b)
    al = paired_training_data(data=str(tmp_path / "aligned"))
    assert al.kind == "aligned" and len(al) == 3 and al.image_size == 8
    a, b = al.batch(torch.tensor([0, 2]))
    torch.testing.assert_close(a, -b, atol=1e-6, rtol=0)
    fo = paired_training_data(data=str(tmp_path / "folders"), direction="BtoA")
    a2, b2 = fo.batch(torch.tensor([0, 2]))
    torch.testing.assert_close(a2, a.neg(), atol=1e-6, rtol=0)  # swapped
    resized = paired_training_data(data=str(tmp_path / "aligned"), size=4)
    assert resized.batch(torch.tensor([0]))[0].shape == (1, 3, 4, 4)
    _png(tmp_path / "folders" / "A" / "extra.png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    with pytest.raises(InputError, match="no partner.*'extra'"):
        paired_training_data(data=str(tmp_path / "folders"))
    ed = paired_training_data(data="edges:synthetic:6", size=16)
    assert ed.channels == 1 and ed.batch(torch.tensor([0, 1]))[0].shape == (2, 1, 16, 16)


def test_channel_options_follow_the_model_sides():
    ed = paired_training_data(data="edges:synthetic:4", size=16, channels=1, channels_b=3)
    assert (ed.channels, ed.output_channels) == (1, 3)  # edges stay 1 channel, the images become RGB
    assert ed.batch(torch.tensor([0]))[1].shape == (1, 3, 16, 16)
    cg = unpaired_training_data(data_a="synthetic:4", data_b="synthetic:6", size=16, channels=3,
                             channels_b=1, direction="BtoA")
    assert (cg.channels, cg.channels_b, len(cg.a), len(cg.b)) == (3, 1, 6, 4)
    with pytest.raises(UsageError, match="1 or 3"):
        unpaired_training_data(data_a="synthetic:4", data_b="synthetic:4", channels=2)


def test_cli_trains_pix2pix_on_an_aligned_folder_then_translates(tmp_path, monkeypatch, capsys):
    import numpy as np

    from gencli.cli.app import run

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for i in range(4):
        a = rng.integers(0, 255, (8, 8), dtype=np.uint8)
        _png(tmp_path / "pairs" / f"{i}.png", np.concatenate([a, 255 - a], axis=1))
    config = {"generator": {"ngf": 2}, "discriminator": {"ndf": 4, "n_layers": 1}}
    code = run(["train", "pix2pix", "--data", "pairs", "--out", "run", "--steps", "2", "--batch-size", "2",
                "--channels", "1", "--config", json.dumps(config), "--log-every", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    ck = load_checkpoint(tmp_path / "run" / MODEL_FILE)
    assert ck.family == "pix2pix" and ck.config["generator"]["num_downs"] == 5
    _png(tmp_path / "q.png", rng.integers(0, 255, (11, 7), dtype=np.uint8))
    code = run(["translate", "pix2pix", "--weights", "run", "q.png", "-o", "out/", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert Image.open(tmp_path / "out" / "q.png").size == (7, 11)
