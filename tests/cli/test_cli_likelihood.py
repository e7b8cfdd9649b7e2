"""The likelihood families through the generic commands: evaluate nll (bits/dim), translate
(reconstruct / denoise), interpolate between encoded images and --traverse."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from cli_support import _isolated, cli  # noqa: F401

from gencli.checkpoints import save_checkpoint


def _save(model, path: Path) -> Path:
    save_checkpoint(path, model.state_dict(), {"family": model.family, "config": model.config, "dataset": "tiny",
                                               "image_size": model.image_size, "channels": model.channels},
                    force=True)
    return path


def _noise_pngs(folder: Path, n: int = 6, size: int = 8, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), "L").save(folder / f"{i:02d}.png")
    return folder


@pytest.fixture
def uniform_pixelcnn(tmp_path) -> Path:
    """A PixelCNN whose every conditional is the uniform distribution over 256 levels."""
    from gencli.models.autoregressive.pixelcnn import PixelCNN

    torch.manual_seed(0)
    m = PixelCNN(PixelCNN.config_for_data(8, 1, None, {"hidden": 4, "layers": 2, "kernel": 3, "first_kernel": 3,
                                                       "head": 4}))
    last = m.net.head[-1]
    torch.nn.init.zeros_(last.weight), torch.nn.init.zeros_(last.bias)
    return _save(m, tmp_path / "uniform.safetensors")


def test_uniform_noise_under_a_uniform_model_is_exactly_8_bits_per_dim(tmp_path, uniform_pixelcnn):
    from gencli.metrics.evaluate import evaluate
    from gencli.models.layers.distributions import LOG256, bits_per_dim

    assert float(bits_per_dim(torch.tensor([-64 * LOG256]), 64)) == pytest.approx(8.0, abs=1e-12)
    folder = _noise_pngs(tmp_path / "noise")
    r = evaluate("nll", [str(folder)], model="pixelcnn", model_weights=str(uniform_pixelcnn))
    assert r["bits_per_dim"] == pytest.approx(8.0, abs=1e-5) and r["n"] == 6 and r["dims"] == 64
    assert r["nats_per_image"] == pytest.approx(64 * math.log(256), rel=1e-6)


def test_evaluate_nll_json_and_errors(tmp_path, capsysbinary, uniform_pixelcnn):
    folder = _noise_pngs(tmp_path / "noise")
    r = cli(capsysbinary, "evaluate", "nll", "--model", "pixelcnn", "--model-weights", uniform_pixelcnn, folder,
            "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["metric"] == "nll" and abs(out["bits_per_dim"] - 8) < 1e-5
    r = cli(capsysbinary, "evaluate", "nll", "--model", "pixelcnn", "--model-weights", uniform_pixelcnn, folder)
    assert r.code == 0 and "8.0000 bits/dim" in r.err and r.out.decode().startswith("bits_per_dim: 8.0000")
    r = cli(capsysbinary, "evaluate", "nll", "--model", "ddpm", folder)
    assert r.code != 0 and "cannot compute likelihoods" in r.err
    r = cli(capsysbinary, "evaluate", "nll", folder)
    assert r.code == 2 and "--model" in r.err


@pytest.fixture
def tiny_vae(tmp_path) -> Path:
    from gencli.models.vae.model import VAE

    torch.manual_seed(0)
    return _save(VAE(VAE.config_for_data(8, 1, None, {"hidden": [4], "dense": 8, "latent_dim": 3})),
                 tmp_path / "vae.safetensors")


def test_vae_iwae_option_reaches_the_model(tmp_path, capsysbinary, tiny_vae):
    folder = _noise_pngs(tmp_path / "noise", n=3)
    r = cli(capsysbinary, "evaluate", "nll", "--model", "vae", "--model-weights", tiny_vae, folder,
            "--samples", "3", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["options"] == {"samples": 3}


def test_translate_reconstructs_and_interpolate_uses_images(tmp_path, capsysbinary, tiny_vae):
    folder = _noise_pngs(tmp_path / "imgs", n=2)
    r = cli(capsysbinary, "translate", "vae", folder, "-w", tiny_vae, "-o", tmp_path / "rec/")
    assert r.code == 0, r.err
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == ["00.png", "01.png"]
    a, b = folder / "00.png", folder / "01.png"
    r = cli(capsysbinary, "interpolate", "vae", a, b, "--frames", "5", "-w", tiny_vae, "-o", tmp_path / "strip.png")
    assert r.code == 0, r.err
    assert Image.open(tmp_path / "strip.png").size[0] > 5 * 8
    r = cli(capsysbinary, "interpolate", "vae", a, "--traverse", "--frames", "4", "-w", tiny_vae,
            "-o", tmp_path / "trav/")
    assert r.code == 0, r.err
    assert len(list((tmp_path / "trav").iterdir())) == 3 * 4  # 3 latents x 4 frames
    r = cli(capsysbinary, "interpolate", "ddpm", a, b, "-o", tmp_path / "x.png")
    assert r.code != 0 and "cannot encode" in r.err
