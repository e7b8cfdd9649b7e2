"""Official CycleGAN/pix2pix generator layout, conversion of official .pth files, and a reference
forward pass written independently from the official architecture description (functional code
reading the official keys), which our networks must reproduce to 1e-5."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gencli import registry
from gencli.checkpoints import load_checkpoint
from gencli.convert.official_cyclegan import (convert_cyclegan, convert_file, convert_pix2pix, load_pth,
                                              official_to_gencli)
from gencli.convert.official_generators import infer_generator_config
from gencli.errors import InputError, UsageError
from gencli.models.translation.cyclegan import CycleGAN
from gencli.models.gan.discriminators import build_discriminator
from gencli.models.translation.networks import build_generator
from gencli.models.translation.pix2pix import Pix2Pix
from translation_support import _rand, official_resnet_sd, official_unet_sd  # noqa: F401


# ------------------------------------------------------------------------------------------
# Official-layout state dicts, built from the published key description (not from our modules)
# ------------------------------------------------------------------------------------------


def _norm(sd, key, x, norm, per_image=False):
    if norm == "instance":
        return F.instance_norm(x, eps=1e-5)
    if per_image:  # train-mode BatchNorm on a batch of one image, image by image
        return torch.cat([F.batch_norm(xi[None], None, None, sd[f"{key}.weight"], sd[f"{key}.bias"],
                                       training=True, eps=1e-5) for xi in x])
    return F.batch_norm(x, sd[f"{key}.running_mean"], sd[f"{key}.running_var"], sd[f"{key}.weight"],
                        sd[f"{key}.bias"], training=False, eps=1e-5)


def ref_resnet(sd, x, n_blocks, norm="instance", dropout=False, padding="reflect"):
    def conv(key, t, stride=1, pad=0):
        return F.conv2d(t, sd[f"{key}.weight"], sd.get(f"{key}.bias"), stride=stride, padding=pad)

    def convT(key, t):
        return F.conv_transpose2d(t, sd[f"{key}.weight"], sd.get(f"{key}.bias"), stride=2, padding=1,
                                  output_padding=1)

    def pad1(t):
        return F.pad(t, (1, 1, 1, 1), mode="reflect") if padding == "reflect" else t

    p = 0 if padding == "reflect" else 1
    h = F.relu(_norm(sd, "model.2", conv("model.1", F.pad(x, (3, 3, 3, 3), mode="reflect")), norm))
    h = F.relu(_norm(sd, "model.5", conv("model.4", h, 2, 1), norm))
    h = F.relu(_norm(sd, "model.8", conv("model.7", h, 2, 1), norm))
    first, second = (1, 6 if dropout else 5) if padding == "reflect" else (0, 4 if dropout else 3)
    for i in range(n_blocks):
        b = f"model.{10 + i}.conv_block"
        r = F.relu(_norm(sd, f"{b}.{first + 1}", conv(f"{b}.{first}", pad1(h), pad=p), norm))
        r = _norm(sd, f"{b}.{second + 1}", conv(f"{b}.{second}", pad1(r), pad=p), norm)
        h = h + r
    u = 10 + n_blocks
    h = F.relu(_norm(sd, f"model.{u + 1}", convT(f"model.{u}", h), norm))
    h = F.relu(_norm(sd, f"model.{u + 4}", convT(f"model.{u + 3}", h), norm))
    return torch.tanh(conv(f"model.{u + 7}", F.pad(h, (3, 3, 3, 3), mode="reflect")))


def ref_unet(sd, x, num_downs, norm="batch", per_image=False):
    def down(key, t):
        return F.conv2d(t, sd[f"{key}.weight"], sd.get(f"{key}.bias"), stride=2, padding=1)

    def up(key, t):
        return F.conv_transpose2d(t, sd[f"{key}.weight"], sd.get(f"{key}.bias"), stride=2, padding=1)

    def level(t, prefix, depth):
        # the official block's LeakyReLU is in place: the skip carries LeakyReLU(t)
        t = F.leaky_relu(t, 0.2)
        h = down(prefix + "1", t)
        if depth == num_downs - 1:
            h = _norm(sd, prefix + "4", up(prefix + "3", F.relu(h)), norm, per_image)
        else:
            h = _norm(sd, prefix + "2", h, norm, per_image)
            h = level(h, prefix + "3.model.", depth + 1)
            h = _norm(sd, prefix + "6", up(prefix + "5", F.relu(h)), norm, per_image)
        return torch.cat([t, h], 1)

    h = down("model.model.0", x)
    h = level(h, "model.model.1.model.", 1)
    return torch.tanh(up("model.model.3", F.relu(h)))


def images(n, c, h, w, seed=1):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def save_pth(sd, path, legacy_format=False):
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy_format)
    return path


# ------------------------------------------------------------------------------------------
# Layout
# ------------------------------------------------------------------------------------------


def test_resnet_9blocks_layout_matches_the_official_keys():
    with torch.device("meta"):
        g = build_generator("resnet_9blocks")
    sd = g.state_dict()
    assert len(sd) == 48
    assert sum(v.numel() for v in sd.values()) == 11_378_179
    ref = official_resnet_sd(ngf=64, n_blocks=9)
    assert list(sd) == list(ref)
    assert all(tuple(sd[k].shape) == tuple(ref[k].shape) for k in sd)
    assert {"model.1.weight", "model.10.conv_block.5.weight", "model.18.conv_block.1.bias", "model.19.weight",
            "model.22.weight", "model.26.bias"} <= set(sd)


def test_other_layouts_match():
    with torch.device("meta"):
        r6 = build_generator({"net": "resnet_6blocks", "ngf": 8, "dropout": True}).state_dict()
        u8 = build_generator({"net": "unet_256", "ngf": 4}).state_dict()
    assert set(r6) == set(official_resnet_sd(8, 6, dropout=True))
    assert "model.15.conv_block.6.weight" in r6 and "model.23.weight" in r6
    assert set(u8) == set(official_unet_sd(4, 8))
    with torch.device("meta"):
        assert sum(p.numel() for p in build_generator("unet_256").parameters()) == 54_413_955
        d = build_discriminator({"net": "basic", "input_nc": 6})
    assert [k for k in d.state_dict() if k.endswith("weight") and d.state_dict()[k].dim() == 4] == [
        "model.0.weight", "model.2.weight", "model.5.weight", "model.8.weight", "model.11.weight"]


def test_init_is_normal_0_002():
    torch.manual_seed(0)
    m = CycleGAN({"image_size": 32, "generator": {"ngf": 8, "n_blocks": 2}, "discriminator": {"ndf": 8}})
    w = m.G_A.model[10].conv_block[1].weight.detach()
    assert abs(float(w.std()) - 0.02) < 0.002 and abs(float(w.mean())) < 0.002
    assert float(m.G_A.model[1].bias.detach().abs().max()) == 0.0


# ------------------------------------------------------------------------------------------
# Conversion + reference forward
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [None, "0.3", "0.4"])
def test_resnet_conversion_reproduces_the_reference_forward(tmp_path, legacy):
    sd = official_resnet_sd(ngf=8, n_blocks=6, legacy=legacy, seed=3)
    pth = save_pth(sd, tmp_path / "horse2zebra.pth", legacy_format=legacy == "0.3")
    config, tensors, meta = official_to_gencli(pth, "cyclegan")
    g = config["generator"]
    assert (g["arch"], g["n_blocks"], g["ngf"], g["norm"], g["dropout"]) == ("resnet", 6, 8, "instance", False)
    assert not any(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in tensors)
    n_legacy = sum(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in sd)
    assert (f"dropped {n_legacy} legacy" in meta["notes"]) == bool(legacy)
    model = CycleGAN(config)
    model.load_state_dict(tensors, strict=True)
    x = images(2, 3, 32, 48)
    clean = {k: v for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    expected = ref_resnet(clean, x, 6)
    got = model.translate(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_full_size_resnet_9blocks_reference_forward(tmp_path):
    sd = official_resnet_sd(ngf=64, n_blocks=9, legacy="0.4", seed=5)
    pth = save_pth(sd, tmp_path / "G.pth")
    config, tensors, _ = official_to_gencli(pth, "cyclegan")
    assert config["generator"]["n_blocks"] == 9 and len(tensors) == 48
    model = CycleGAN(config)
    model.load_state_dict(tensors)
    x = images(1, 3, 64, 64)
    clean = {k: v for k, v in sd.items() if "G_A." + k in tensors}
    assert len(clean) == 48
    want = ref_resnet(clean, x, 9)
    torch.testing.assert_close(model.translate(x, fast=False), want, atol=1e-5, rtol=0)
    # the fast path (Winograd in the 256-channel blocks, NHWC norms): within 2e-4 of the [-1, 1] output
    torch.testing.assert_close(model.translate(x), want, atol=2e-4, rtol=0)


def test_dropout_and_zero_padding_layouts_are_detected(tmp_path):
    sd = official_resnet_sd(ngf=4, n_blocks=3, dropout=True, legacy="0.4", seed=2)
    cfg = infer_generator_config(sd)
    assert cfg["dropout"] is True and cfg["padding_type"] == "reflect" and cfg["n_blocks"] == 3
    config, tensors, _ = official_to_gencli(save_pth(sd, tmp_path / "d.pth"), "cyclegan")
    assert "G_A.model.10.conv_block.6.weight" in tensors
    model = CycleGAN(config)
    model.load_state_dict(tensors)
    x = images(1, 3, 16, 20)
    clean = {k[4:]: v for k, v in tensors.items()}
    torch.testing.assert_close(model.translate(x), ref_resnet(clean, x, 3, dropout=True), atol=1e-5, rtol=0)
    # zero padding: conv_block.0 / .3
    with torch.device("cpu"):
        zero = build_generator({"arch": "resnet", "n_blocks": 2, "ngf": 4, "padding_type": "zero"}).state_dict()
    assert infer_generator_config(zero)["padding_type"] == "zero"


@pytest.mark.parametrize("padding", ["reflect", "zero"])
@pytest.mark.parametrize("dropout", [False, True])
def test_official_padding_and_dropout_layouts_are_read_as_written(tmp_path, padding, dropout):
    """Each of the four official ResnetBlock layouts (keys written from build_conv_block, not from
    our modules) is detected as what it is, converted, and reproduces the reference forward."""
    sd = official_resnet_sd(ngf=4, n_blocks=2, dropout=dropout, padding=padding, seed=7)
    second = {("reflect", False): 5, ("reflect", True): 6, ("zero", False): 3, ("zero", True): 4}[padding, dropout]
    assert f"model.10.conv_block.{second}.weight" in sd
    cfg = infer_generator_config(sd)
    assert (cfg["padding_type"], cfg["dropout"]) == (padding, dropout)
    config, tensors, _ = official_to_gencli(save_pth(sd, tmp_path / "g.pth"), "cyclegan")
    assert (config["generator"]["padding_type"], config["generator"]["dropout"]) == (padding, dropout)
    model = CycleGAN(config)
    model.load_state_dict(tensors, strict=True)
    x = images(1, 3, 16, 20)
    torch.testing.assert_close(model.translate(x), ref_resnet(sd, x, 2, dropout=dropout, padding=padding),
                               atol=1e-5, rtol=0)
    with pytest.raises(UsageError, match="contradicts"):
        infer_generator_config(sd, dropout=not dropout)


@pytest.mark.parametrize("num_downs,size", [(6, 64), (7, 128)])
def test_unet_conversion_reproduces_the_reference_forward(tmp_path, num_downs, size):
    sd = official_unet_sd(ngf=4, num_downs=num_downs, seed=4)
    del sd["model.model.1.model.2.num_batches_tracked"]  # a pre-0.4 BatchNorm lacks it: added back
    config, tensors, _ = official_to_gencli(save_pth(sd, tmp_path / "edges2shoes.pth"), "pix2pix")
    g = config["generator"]
    assert (g["arch"], g["num_downs"], g["ngf"], g["norm"], g["dropout"]) == ("unet", num_downs, 4, "batch", True)
    assert config["inference"] == {"per_image_norm": True, "dropout": True}  # what the official test.py does
    model = Pix2Pix(config)
    model.load_state_dict(tensors)
    x = images(2, 3, size, size)
    # running statistics, no dropout (the official --eval)
    torch.testing.assert_close(model.translate(x, dropout=False, per_image_norm=False),
                               ref_unet(sd, x, num_downs), atol=1e-5, rtol=0)
    # per-image statistics: train-mode BatchNorm with batch size 1 (the official default test)
    torch.testing.assert_close(model.translate(x, dropout=False),
                               ref_unet(sd, x, num_downs, per_image=True), atol=1e-5, rtol=0)


def test_unet_depth_is_inferred():
    for depth in (5, 6, 7, 8):
        sd = official_unet_sd(ngf=2, num_downs=depth)
        assert infer_generator_config(sd)["num_downs"] == depth
    inst = official_unet_sd(ngf=2, num_downs=5, norm="instance", legacy="0.4")
    assert infer_generator_config(inst)["norm"] == "instance"


def test_two_generators_make_one_two_way_checkpoint(tmp_path):
    run = tmp_path / "horse2zebra_cyclegan"
    run.mkdir()
    save_pth(official_resnet_sd(4, 2, seed=1), run / "latest_net_G_A.pth")
    save_pth(official_resnet_sd(4, 2, seed=2), run / "latest_net_G_B.pth")
    out = convert_cyclegan(str(run), str(tmp_path / "h2z.safetensors"))
    ck = load_checkpoint(out)
    assert ck.family == "cyclegan" and ck.config["directions"] == ["AtoB", "BtoA"]
    model, meta = registry.load_model("cyclegan", weights=str(out))
    x = images(1, 3, 12, 12)
    a = model.translate(x)
    b = model.translate(x, direction="BtoA")
    assert not torch.allclose(a, b)
    # AtoB is latest_net_G_A.pth and BtoA latest_net_G_B.pth, each equal to its own reference forward
    torch.testing.assert_close(a, ref_resnet(official_resnet_sd(4, 2, seed=1), x, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(b, ref_resnet(official_resnet_sd(4, 2, seed=2), x, 2), atol=1e-5, rtol=0)
    assert ck.metadata["source_files"] == ["latest_net_G_A.pth", "latest_net_G_B.pth"]
    with pytest.raises(UsageError):
        convert_cyclegan(str(run), str(out))  # exists, no force


def test_converted_file_loads_through_the_registry(tmp_path):
    sd = official_resnet_sd(ngf=4, n_blocks=2, legacy="0.3")
    pth = save_pth(sd, tmp_path / "zebra2horse.pth")
    out = convert_file(pth, tmp_path / "z2h.safetensors", "cyclegan")
    model, meta = registry.load_model("cyclegan", weights=str(out))
    assert meta["family"] == "cyclegan" and meta["dataset"] == "zebra2horse"
    assert meta["source_sha256"][0] and "resnet_2blocks" in meta["notes"]
    with pytest.raises(UsageError, match="only the AtoB generator.*such as horse2zebra"):
        model.translate(images(1, 3, 8, 8), direction="BtoA")
    # a .pth is also accepted directly (converted in memory)
    direct, _ = registry.load_model("cyclegan", weights=str(pth))
    x = images(1, 3, 8, 8)
    assert torch.equal(direct.translate(x), model.translate(x))
    # a pix2pix file is not a cyclegan checkpoint
    p2p = convert_pix2pix(str(save_pth(official_unet_sd(2, 5), tmp_path / "e.pth")), str(tmp_path / "e.safetensors"))
    with pytest.raises(InputError, match="pix2pix checkpoint, not cyclegan"):
        registry.load_model("cyclegan", weights=str(p2p))


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_pth(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle at all")
    with pytest.raises(InputError, match="not a PyTorch"):
        load_pth(tmp_path / "junk.pth")
    torch.save({"model.1.weight": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(InputError, match="refusing to load.*print"):
        load_pth(tmp_path / "evil.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "evil.pth").read_bytes()[:100])
    with pytest.raises(InputError, match="truncated or not a PyTorch"):
        load_pth(tmp_path / "cut.pth")
    d = build_discriminator({"net": "basic", "input_nc": 3, "ndf": 4, "norm": "instance"})
    torch.save(d.state_dict(), tmp_path / "latest_net_D_A.pth")
    with pytest.raises(InputError, match="discriminator"):
        official_to_gencli(tmp_path / "latest_net_D_A.pth", "cyclegan")
    sd = official_resnet_sd(4, 2)
    sd["model.26.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "odd.pth")
    with pytest.raises(InputError, match="unexpected key"):
        official_to_gencli(tmp_path / "odd.pth", "cyclegan")
    sd = official_resnet_sd(4, 2)
    sd["model.4.weight"] = sd["model.4.weight"][:, :2]
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(InputError, match="shape"):
        official_to_gencli(tmp_path / "shape.pth", "cyclegan")


def test_dataparallel_prefix_and_wrapped_state_dict(tmp_path):
    sd = official_resnet_sd(4, 2)
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "dp.pth")
    assert set(load_pth(tmp_path / "dp.pth")) == set(sd)
