"""Equality with the reference tools: pytorch-fid (FID, default preprocessing) and torch-fidelity
(FID/KID/IS with TF preprocessing, precision/recall on VGG16).

Skipped when the anchors cannot be imported (an error under CI or GENCLI_REQUIRE_ANCHORS=1) (``make anchors`` installs them into ``.anchors/``;
``$GENCLI_ANCHORS`` points elsewhere). The real Inception weights cannot be downloaded here, so a
random-weight network is saved in the references' own ``.pth`` layout: pytorch-fid finds it in
torch's hub cache under its official file name (its download code is not touched),
torch-fidelity gets it through ``feature_extractor_weights_path``, and gencli converts it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from cli_support import _isolated, cli  # noqa: F401

from references import anchors

from gencli.metrics.testing import random_inception_state, random_vgg16_state, save_pth

# a skip in a dev run, an error under CI / GENCLI_REQUIRE_ANCHORS=1 (tests/references.py)
pytorch_fid, torch_fidelity = anchors(module_level=True)


def _folder(path, n, seed, size=16, offset=0, grey=False):
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = np.clip(rng.integers(0, 256, size=(size, size, 3)) + offset, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
        (img.convert("L") if grey and i % 2 else img).save(path / f"{i:04d}.png")
    return path


#: random weights never carry the real file's name (a leftover could pass for the real one)
FIXTURE = "random-fixture-inception-7.pth"


@pytest.fixture(scope="module")
def pth(tmp_path_factory):
    d = tmp_path_factory.mktemp("torchhub")
    return save_pth(random_inception_state(7), d / "hub" / "checkpoints" / FIXTURE)


@pytest.fixture
def torch_home(pth, monkeypatch):
    """pytorch-fid's load_state_dict_from_url finds the file in torch's hub cache: no download
    (its URL is pointed at the fixture's name)."""
    import pytorch_fid.inception

    monkeypatch.setenv("TORCH_HOME", str(pth.parents[2]))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    monkeypatch.setattr(pytorch_fid.inception, "FID_WEIGHTS_URL", f"https://example.invalid/{FIXTURE}")
    return pth


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    return _folder(root / "real", 72, 0, grey=True), _folder(root / "fake", 70, 1, size=20, offset=40)


def _gencli(capsysbinary, *args):
    r = cli(capsysbinary, "evaluate", *map(str, args), "--json", "--no-cache")
    assert r.code == 0, r.err
    return json.loads(r.out)


def _extract(weights, folder, *, dims, mode, feats=False, logits=False):
    from gencli.metrics.features import build_extractor
    from gencli.metrics.runner import extract, resolve_source

    ex = build_extractor("inception", weights=str(weights), dims=dims, resize=mode)
    return extract(resolve_source(str(folder)), ex, need_features=feats, need_logits=logits, use_cache=False)


def test_features_equal_pytorch_fid(torch_home, folders):
    files = sorted(str(p) for p in folders[0].glob("*.png"))[:3]
    model = pytorch_fid.InceptionV3([pytorch_fid.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    ref = pytorch_fid.get_activations(files, model, batch_size=3, dims=2048, device="cpu", num_workers=0)
    from gencli.metrics.features import build_extractor
    from gencli.metrics.runner import Source, extract

    ex = build_extractor("inception", weights=str(torch_home), dims=2048)
    ours = extract(Source("images", "x", 3, paths=files), ex, need_features=True, use_cache=False).features
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_fid_equals_calculate_fid_given_paths(capsysbinary, torch_home, folders):
    """pytorch-fid's own end-to-end function; 64-d features so that 70 images give a full-rank
    covariance (scipy's sqrtm, which pytorch-fid uses, is only accurate then)."""
    ref = pytorch_fid.calculate_fid_given_paths([str(f) for f in folders], batch_size=50, device="cpu",
                                                dims=64, num_workers=0)
    ours = _gencli(capsysbinary, "fid", *folders, "--dims", "64", "--weights", torch_home)
    assert ours["fid"] == pytest.approx(ref, rel=1e-4)


def test_fid_and_kid_equal_torch_fidelity_tf_mode(torch_home, folders):
    real, fake = folders
    ref = torch_fidelity.calculate_metrics(
        input1=str(real), input2=str(fake), fid=True, kid=True, cuda=False, verbose=False, cache=False,
        save_cpu_ram=True, feature_extractor_weights_path=str(torch_home), feature_layer_fid="64",
        feature_layer_kid="64", kid_subsets=20, kid_subset_size=50)
    a = _extract(torch_home, real, dims=64, mode="tf", feats=True)
    b = _extract(torch_home, fake, dims=64, mode="tf", feats=True)
    from gencli.metrics.kid import kernel_inception_distance
    from gencli.metrics.stats import frechet_distance

    fid = frechet_distance(a.stats.mu, a.stats.sigma, b.stats.mu, b.stats.sigma)
    assert fid == pytest.approx(ref["frechet_inception_distance"], rel=1e-4)
    kid = kernel_inception_distance(a.features, b.features, subsets=20, subset_size=50, seed=2020)
    assert kid.mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-3)
    assert kid.std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-3)


def test_inception_score_equals_torch_fidelity(capsysbinary, torch_home, tmp_path):
    folder = _folder(tmp_path / "is", 8, 3, size=24)
    ref = torch_fidelity.calculate_metrics(
        input1=str(folder), isc=True, cuda=False, verbose=False, cache=False, save_cpu_ram=True,
        feature_extractor_weights_path=str(torch_home), isc_splits=2)
    ours = _gencli(capsysbinary, "is", folder, "--splits", "2", "--preprocess", "tf", "--weights", torch_home)
    assert ours["is_mean"] == pytest.approx(ref["inception_score_mean"], rel=1e-3)
    assert ours["is_std"] == pytest.approx(ref["inception_score_std"], rel=1e-3, abs=1e-6)


@pytest.mark.slow
def test_precision_recall_equals_torch_fidelity_vgg16(tmp_path, monkeypatch):
    vgg = save_pth(random_vgg16_state(3), tmp_path / "vgg16.pth")
    real, fake = _folder(tmp_path / "r", 6, 4), _folder(tmp_path / "f", 6, 5, offset=30)
    ref = torch_fidelity.calculate_metrics(
        input1=str(fake), input2=str(real), prc=True, cuda=False, verbose=False, cache=False,
        save_cpu_ram=True, feature_extractor="vgg16", feature_extractor_weights_path=str(vgg))
    from gencli.metrics.features import build_extractor
    from gencli.metrics.prd import precision_recall
    from gencli.metrics.runner import extract, resolve_source

    ex = build_extractor("vgg16", weights=str(vgg))
    a = extract(resolve_source(str(real)), ex, need_stats=False, need_features=True, use_cache=False)
    b = extract(resolve_source(str(fake)), ex, need_stats=False, need_features=True, use_cache=False)
    res = precision_recall(a.features, b.features, k=3)
    assert res.precision == pytest.approx(ref["precision"], abs=1e-6)
    assert res.recall == pytest.approx(ref["recall"], abs=1e-6)
