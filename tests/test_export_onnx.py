"""ONNX export (`gencli export`, gencli.export, GenerativeModel.export_onnx): the exported tiny
UNet and translation generators run in ONNX Runtime (and OpenVINO when installed) with outputs
within 1e-4 of gencli's forward on the same inputs, at other batch sizes than the traced one.

Skipped as a whole when onnxruntime (or onnx, which writes the metadata) is not installed."""

from __future__ import annotations

import json

import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from cli_support import _isolated, cli  # noqa: E402,F401
from tiny import randomize, tiny_ddpm_config  # noqa: E402

import gencli  # noqa: E402
from gencli import exporting  # noqa: E402
from gencli.models.diffusion.ddpm import DiffusionModel  # noqa: E402
from gencli.models.translation.cyclegan import CycleGAN  # noqa: E402
from gencli.models.translation.pix2pix import Pix2Pix  # noqa: E402

TOL = 1e-4


def _randomize_buffers(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(1)
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(0.1 * torch.randn(b.shape, generator=g))
        elif name.endswith("running_var"):
            b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return model


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def unet_onnx(tmp_path_factory):
    """A class-conditional tiny UNet (attention, 16x16) with random weights, exported once."""
    model = randomize(DiffusionModel(tiny_ddpm_config(16, 1, 2))).eval()
    path = tmp_path_factory.mktemp("onnx") / "unet.onnx"
    summary = gencli.export(model, path)
    return model, path, summary


def test_unet_runs_in_onnxruntime_like_gencli(unet_onnx):
    model, path, summary = unet_onnx
    assert summary["max_abs_diff"] is not None and summary["max_abs_diff"] <= TOL
    assert summary["inputs"] == {"sample": ["batch", 1, 16, 16], "timestep": ["batch"], "class_labels": ["batch"]}
    sess = _session(path)
    assert [i.name for i in sess.get_inputs()] == ["sample", "timestep", "class_labels"]
    g = torch.Generator().manual_seed(3)
    for batch in (1, 5):  # the trace used 2: the batch axis is dynamic
        x = torch.randn(batch, 1, 16, 16, generator=g)
        t = torch.randint(0, 1000, (batch,), generator=g)
        y = torch.randint(0, 3, (batch,), generator=g)  # 2 is the null class (guidance)
        got = sess.run(None, {"sample": x.numpy(), "timestep": t.numpy(), "class_labels": y.numpy()})[0]
        with torch.no_grad():
            plain = model.unet(x, t, y)
            with model.unet.fast_inference():
                fast = model.unet(x, t, y)
        assert got.shape == (batch, 1, 16, 16)
        assert (torch.from_numpy(got) - plain).abs().max() <= TOL
        assert (torch.from_numpy(got) - fast).abs().max() <= TOL


def test_unet_metadata_rebuilds_the_schedule(unet_onnx):
    from gencli.models.diffusion.schedulers import NoiseSchedule

    model, path, _ = unet_onnx
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["gencli_family"] == "ddpm" and meta["prediction_type"] == model.schedule.prediction_type
    assert meta["null_class"] == "2" and meta["num_classes"] == "2"
    assert NoiseSchedule.from_config(json.loads(meta["scheduler"])).to_config() == model.schedule.to_config()


def test_ddim_loop_on_the_exported_unet_matches_gencli_sample(unet_onnx):
    """The README's recipe: gencli's DDIM math around the ONNX UNet gives gencli's images."""
    from gencli.models.diffusion.schedulers import DDIMSampler

    model, path, _ = unet_onnx
    sess = _session(path)
    x_T = model.prior(3, torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 0])
    want = model.sample(3, None, sampler="ddim", steps=4, eta=0.0, guidance=1.0, init_noise=x_T, class_labels=labels)
    algo = DDIMSampler(model.schedule, 4, "leading")
    x = x_T.clone()
    for i, s in enumerate(algo.steps):
        out = sess.run(None, {"sample": x.numpy(), "timestep": torch.full((3,), s.t).numpy(),
                              "class_labels": labels.numpy()})[0]
        x = algo.step(i, torch.from_numpy(out), x, None)
    assert (x.clamp(-1, 1) - want).abs().max() <= 1e-3


def test_unconditional_unet_has_no_class_input(tmp_path):
    model = randomize(DiffusionModel(tiny_ddpm_config(8, 3, None)), seed=1).eval()
    summary = gencli.export(model, tmp_path / "u.onnx")
    assert list(summary["inputs"]) == ["sample", "timestep"] and summary["max_abs_diff"] <= TOL


def _cyclegan():
    torch.manual_seed(0)
    cfg = CycleGAN.config_for_data(16, 1, None, {"channels_b": 3, "generator": {"ngf": 4, "n_blocks": 2},
                                                 "discriminator": {"ndf": 4, "n_layers": 1}, "pool_size": 2})
    return randomize(CycleGAN(cfg)).eval()


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_cyclegan_generator_runs_in_onnxruntime_like_translate(tmp_path, direction):
    model = _cyclegan()
    summary = gencli.export(model, tmp_path / "g.onnx", direction=direction)
    assert summary["max_abs_diff"] <= TOL and summary["metadata"]["direction"] == direction
    c_in = 1 if direction == "AtoB" else 3
    assert summary["inputs"] == {"input": ["batch", c_in, "height", "width"]}
    x = torch.rand(3, c_in, 12, 20, generator=torch.Generator().manual_seed(2)) * 2 - 1  # another batch and size
    got = _session(tmp_path / "g.onnx").run(None, {"input": x.numpy()})[0]
    want = model.translate(x, direction=direction)
    assert got.shape == tuple(want.shape) and (torch.from_numpy(got) - want).abs().max() <= TOL


def test_pix2pix_generator_with_official_test_time_behaviour(tmp_path):
    """Per-image batch norm is in the graph; test-time dropout is not (said in a note)."""
    torch.manual_seed(0)
    cfg = Pix2Pix.config_for_data(32, 1, None, {"generator": {"ngf": 2}, "discriminator": {"ndf": 4, "n_layers": 1},
                                                "inference": {"per_image_norm": True, "dropout": True}})
    model = _randomize_buffers(randomize(Pix2Pix(cfg))).eval()
    summary = gencli.export(model, tmp_path / "p.onnx")
    assert summary["max_abs_diff"] <= TOL and summary["metadata"]["per_image_norm"] == "true"
    assert any("dropout" in n for n in summary["notes"])
    x = torch.rand(2, 1, 64, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    got = _session(tmp_path / "p.onnx").run(None, {"input": x.numpy()})[0]
    want = model.translate(x, dropout=False)
    assert (torch.from_numpy(got) - want).abs().max() <= TOL


def test_openvino_runs_the_exported_graphs(unet_onnx, tmp_path):
    ov = pytest.importorskip("openvino")
    model, path, _ = unet_onnx
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    g = torch.Generator().manual_seed(4)
    x, t, y = torch.randn(3, 1, 16, 16, generator=g), torch.tensor([999, 10, 0]), torch.tensor([2, 1, 0])
    got = compiled({"sample": x.numpy(), "timestep": t.numpy(), "class_labels": y.numpy()})[0]
    with torch.no_grad():
        assert (torch.from_numpy(got) - model.unet(x, t, y)).abs().max() <= TOL
    gan = _cyclegan()
    gencli.export(gan, tmp_path / "g.onnx", check=False)
    x = torch.rand(2, 1, 16, 24) * 2 - 1
    got = ov.Core().compile_model(str(tmp_path / "g.onnx"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(
        {"input": x.numpy()})[0]
    assert (torch.from_numpy(got) - gan.translate(x)).abs().max() <= TOL


def test_export_refuses_to_overwrite_and_bad_requests(unet_onnx, tmp_path):
    from gencli.errors import UsageError

    model, path, _ = unet_onnx
    before = path.read_bytes()
    with pytest.raises(UsageError, match="exists; pass --force"):
        gencli.export(model, path)
    assert path.read_bytes() == before
    with pytest.raises(UsageError, match="--format"):
        gencli.export(model, tmp_path / "x.onnx", format="tflite")
    with pytest.raises(UsageError, match="--direction"):
        gencli.export(_cyclegan(), tmp_path / "x.onnx", direction="sideways")
    assert not (tmp_path / "x.onnx").exists() and list(tmp_path.iterdir()) == []


def test_cli_export(capsysbinary, tmp_path):
    out = tmp_path / "s2b.onnx"
    r = cli(capsysbinary, "export", "cyclegan", "sneaker2boot", "--direction", "BtoA", "-o", out, "--json")
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["metadata"]["direction"] == "BtoA" and summary["max_abs_diff"] <= TOL
    assert f"wrote {out}" in r.err and "ONNX Runtime matches gencli" in r.err
    cli(capsysbinary, "export", "cyclegan", "-o", out).assert_error(2, "exists; pass --force")
    cli(capsysbinary, "export", "cyclegan", "--size", "8", "-o", tmp_path / "y.onnx").assert_error(
        2, "cyclegan has no option --size for export")
    cli(capsysbinary, "export", "cyclegan", "-o", "-").assert_error(2, "not written to stdout")
    cli(capsysbinary, "export", "cyclegan", "--format", "tflite", "-o", tmp_path / "z").assert_error(2, "--format")


@pytest.mark.slow
def test_dynamo_exporter_gives_the_same_graph_outputs(unet_onnx, tmp_path):
    pytest.importorskip("onnxscript")
    model, _, _ = unet_onnx
    summary = gencli.export(model, tmp_path / "d.onnx", exporter="dynamo")
    assert summary["exporter"] == "dynamo" and summary["max_abs_diff"] <= TOL
