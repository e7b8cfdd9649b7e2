"""gencli.formats (the table of checkpoint formats), the one safe torch-pickle reader, and .npz safety.

The unsafe-file tests craft pickles whose ``__reduce__`` would run ``os.system("touch MARKER")``:
each asserts an InputError *and* that the marker was never written, so removing
``weights_only=True`` (or ``allow_pickle=False``) anywhere makes them fail.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from cli_support import TINY_OVERRIDES, _isolated, cli, make_tiny_checkpoint  # noqa: F401
from translation_support import official_resnet_sd, official_unet_sd

from gencli import formats, registry
from gencli.convert.torchfile import load_torch_file
from gencli.errors import InputError, UsageError

GENCLI = Path(__file__).resolve().parent.parent / "gencli"


# --- small files of every format -----------------------------------------------------------------
def _diffusers_folder(root: Path, weights: str = "safetensors") -> Path:
    from gencli.models.diffusion.ddpm import DiffusionModel

    model = DiffusionModel.from_config(DiffusionModel.config_for_data(8, 1, None, TINY_OVERRIDES))
    root.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in model.unet.state_dict().items()}
    if weights == "safetensors":
        save_file(state, str(root / "diffusion_pytorch_model.safetensors"))
    else:
        torch.save(state, root / "diffusion_pytorch_model.bin")
    unet_cfg = {k: v for k, v in model.config["unet"].items() if k != "num_class_embeds"}
    (root / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", **unet_cfg}))
    (root / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "DDPMScheduler", "num_train_timesteps": 100, "beta_schedule": "linear"}))
    return root


def _cheap(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Full-shape tensors on one shared 1-element storage (VGG16 is 138M parameters otherwise)."""
    one = torch.zeros(1)
    return {k: one.expand(shape) if shape else one[0] for k, shape in shapes.items()}


def _fid_pth(path: Path) -> Path:
    from gencli.metrics.inception import expected_shapes

    torch.save(_cheap(expected_shapes()), path)
    return path


def _vgg_pth(path: Path) -> Path:
    from gencli.metrics.vgg import VGG16Features

    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in VGG16Features().state_dict().items()}
    torch.save(_cheap(shapes), path)
    return path


@pytest.fixture
def files(tmp_path):
    gencli_file = make_tiny_checkpoint(tmp_path / "tiny.safetensors", num_classes=None)
    folder = tmp_path / "ckpt-folder"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(gencli_file.read_bytes())
    cyclegan = tmp_path / "horse2zebra.pth"
    torch.save(official_resnet_sd(4, 2), cyclegan)
    pix2pix = tmp_path / "edges2shoes.pth"
    torch.save(official_unet_sd(2, 5), pix2pix)
    return {
        "gencli": gencli_file, "gencli-folder": folder,
        "diffusers": _diffusers_folder(tmp_path / "unet"),
        "diffusers-bin": _diffusers_folder(tmp_path / "unet-bin", weights="bin"),
        "cyclegan": cyclegan, "pix2pix": pix2pix,
        "fid-inception": _fid_pth(tmp_path / "pt_inception.pth"), "vgg16": _vgg_pth(tmp_path / "vgg16.pth"),
    }


# --- the table -----------------------------------------------------------------------------------
def test_the_table_has_one_entry_per_format():
    assert list(formats.FORMATS) == ["gencli", "diffusers", "cyclegan", "pix2pix", "fid-inception", "vgg16"]
    for f in formats.FORMATS.values():
        assert f.description and f.serves and callable(f.detect)
        assert (f.converter is None) == (f.name == formats.NATIVE)
    assert formats.get_format("cyclegan-pth").name == "cyclegan"  # registry format names are aliases
    assert formats.get_format("pix2pix-pth").name == "pix2pix"
    with pytest.raises(UsageError, match="unknown checkpoint format 'onnx'"):
        formats.get_format("onnx")


def test_convert_help_lists_the_table(capsysbinary):
    r = cli(capsysbinary, "convert", "--help")
    assert r.code == 0
    text = " ".join(r.out.decode().split())
    for f in formats.FORMATS.values():
        assert f"{f.name} {' '.join(f.description.split())}" in text
    cli(capsysbinary, "convert", "gencli", "x", "-o", "y.safetensors").assert_error(2, "nothing to convert")


@pytest.mark.parametrize("key, family, expected", [
    ("gencli", "ddpm", "gencli"), ("gencli-folder", "ddpm", "gencli"), ("diffusers", "ddpm", "diffusers"),
    ("diffusers-bin", "ddpm", "diffusers"), ("cyclegan", "cyclegan", "cyclegan"), ("pix2pix", "pix2pix", "pix2pix"),
    ("fid-inception", "fid-inception", "fid-inception"), ("vgg16", "vgg16-features", "vgg16"),
])
def test_detect(files, key, family, expected):
    path = files[key]
    assert formats.FORMATS[expected].detect(path)
    assert formats.detect_format(path, family).name == expected
    if expected != "diffusers":
        assert not formats.FORMATS["diffusers"].detect(path)
    if expected in ("gencli", "diffusers"):
        assert not formats.FORMATS["cyclegan"].detect(path) and not formats.FORMATS["vgg16"].detect(path)


def test_detect_native_by_content_and_nothing(tmp_path, files):
    renamed = tmp_path / "weights.bin"
    renamed.write_bytes(files["gencli"].read_bytes())
    assert formats.FORMATS["gencli"].detect(renamed)
    (tmp_path / "junk.txt").write_text("hello")
    assert formats.detect_format(tmp_path / "junk.txt") is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert formats.detect_format(empty) is None


# --- read_checkpoint -----------------------------------------------------------------------------
def test_read_gencli_file_and_folder(files):
    config, tensors, meta = formats.read_checkpoint(files["gencli"], "ddpm")
    assert meta["family"] == "ddpm" and config["image_size"] == 8 and tensors
    assert meta["source"] == str(files["gencli"])
    _, _, meta = formats.read_checkpoint(files["gencli-folder"], "ddpm", fmt="gencli")
    assert meta["source"] == str(files["gencli-folder"] / "model.safetensors")  # the file read
    with pytest.raises(InputError, match="is a ddpm checkpoint, not cyclegan"):
        formats.read_checkpoint(files["gencli"], "cyclegan")


def test_read_gencli_errors_are_today_s(files, tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("a.safetensors", "b.safetensors"):
        (folder / name).write_bytes(files["gencli"].read_bytes())
    with pytest.raises(InputError, match="is a folder without model.safetensors or a diffusers config.json; "
                                         "pass the checkpoint file itself"):
        formats.read_checkpoint(folder, "ddpm")
    # a .pth given to a family no .pth format serves is read as gencli safetensors, as before
    with pytest.raises(InputError, match="truncated or not a safetensors file"):
        formats.read_checkpoint(files["cyclegan"], "ddpm")


@pytest.mark.parametrize("key", ["diffusers", "diffusers-bin"])
def test_read_diffusers(files, key):
    config, tensors, meta = formats.read_checkpoint(files[key], "ddpm")
    assert config["image_size"] == 8 and config["channels"] == 1 and config["sampling"]["sampler"] == "ddpm"
    assert tensors and all(k.startswith("unet.") for k in tensors)
    assert meta["source_format"] == "diffusers" and meta["source"] == str(files[key])
    assert formats.read_checkpoint(files[key], "ddpm", fmt="diffusers")[1].keys() == tensors.keys()


@pytest.mark.parametrize("family, fmt", [("cyclegan", "auto"), ("cyclegan", "cyclegan-pth"), ("pix2pix", "auto")])
def test_read_official_translation_generators(files, family, fmt):
    config, tensors, meta = formats.read_checkpoint(files[family], family, fmt=fmt)
    assert meta["family"] == family and meta["source"] == str(files[family])
    assert all(k.startswith("G_A." if family == "cyclegan" else "G.") for k in tensors)
    assert config["generator"]["arch"] == ("resnet" if family == "cyclegan" else "unet")


def test_read_metric_networks(files):
    config, tensors, meta = formats.read_checkpoint(files["fid-inception"], "fid-inception")
    assert config["network"] == "FIDInceptionV3" and meta["family"] == "fid-inception"
    assert tensors["fc.weight"].shape == (1008, 2048)
    config, tensors, meta = formats.read_checkpoint(files["vgg16"], "vgg16-features", fmt="vgg16")
    assert config["network"] == "vgg16" and meta["family"] == "vgg16-features"
    assert tensors["classifier.3.weight"].shape == (4096, 4096)


def test_explicit_format_must_serve_the_family(files):
    with pytest.raises(UsageError, match="holds ddpm weights, not cyclegan"):
        formats.read_checkpoint(files["diffusers"], "cyclegan", fmt="diffusers")
    with pytest.raises(UsageError, match="unknown checkpoint format"):
        formats.read_checkpoint(files["gencli"], "ddpm", fmt="onnx")


def test_formats_convert_writes_gencli_files(files, tmp_path):
    from gencli.checkpoints import read_metadata

    for kind, family in (("cyclegan", "cyclegan"), ("fid-inception", "fid-inception"), ("vgg16", "vgg16-features")):
        out = formats.convert(kind, files[kind], tmp_path / f"{kind}.safetensors")
        assert read_metadata(out)["family"] == family
    with pytest.raises(UsageError, match="nothing to convert"):
        formats.convert("gencli", files["gencli"], tmp_path / "x.safetensors")


# --- unsafe pickles ------------------------------------------------------------------------------
class _Pwn:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _evil(path: Path, marker: Path, how: str = "zip") -> Path:
    payload = {"model.1.weight": _Pwn(marker), "features.0.weight": torch.zeros(1)}
    if how == "raw":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=how == "zip")
    return path


def _refused(call, path: Path, marker: Path) -> None:
    with pytest.raises(InputError) as e:
        call()
    assert not marker.exists(), "pickled code ran"
    msg = str(e.value)
    assert "\n" not in msg and path.name in msg and "refusing to load" in msg, msg


@pytest.mark.parametrize("how", ["zip", "legacy", "raw"])
def test_load_torch_file_refuses_pickled_code(tmp_path, how):
    marker = tmp_path / "PWNED"
    path = _evil(tmp_path / "evil.pth", marker, how)
    _refused(lambda: load_torch_file(path), path, marker)


def _via_diffusers_bin(tmp_path, marker):
    folder = _diffusers_folder(tmp_path / "unet", weights="bin")
    _evil(folder / "diffusion_pytorch_model.bin", marker)
    return folder / "diffusion_pytorch_model.bin", [
        lambda: formats.read_checkpoint(folder, "ddpm"),
        lambda: formats.convert("diffusers", str(folder), tmp_path / "o.safetensors"),
        lambda: registry.load_model("ddpm", weights=str(folder)),  # `gencli sample ddpm --weights FOLDER`
    ]


def _via_official(family):
    def make(tmp_path, marker):
        from gencli.convert.official_cyclegan import official_to_gencli

        path = _evil(tmp_path / "latest_net_G.pth", marker)
        return path, [
            lambda: formats.read_checkpoint(path, family),
            lambda: formats.convert(family, str(path), tmp_path / "o.safetensors"),
            lambda: official_to_gencli(path, family),
        ]
    return make


def _via_network(kind, name):
    def make(tmp_path, marker):
        from gencli.metrics.weights import resolve_network_weights

        family = "vgg16-features" if kind == "vgg16" else kind
        path = _evil(tmp_path / "weights.pth", marker)
        return path, [
            lambda: formats.read_checkpoint(path, family),
            lambda: formats.convert(kind, path, tmp_path / "o.safetensors"),
            lambda: resolve_network_weights(name, weights=str(path)),  # `gencli evaluate --weights X.pth`
        ]
    return make


@pytest.mark.parametrize("make", [_via_diffusers_bin, _via_official("cyclegan"), _via_official("pix2pix"),
                                  _via_network("fid-inception", "fid-inception"), _via_network("vgg16", "vgg16")],
                         ids=["diffusers-bin", "cyclegan-pth", "pix2pix-pth", "fid-inception-pth", "vgg16-pth"])
def test_every_pickle_reading_path_refuses_pickled_code(tmp_path, make):
    marker = tmp_path / "PWNED"
    path, calls = make(tmp_path, marker)
    for call in calls:
        _refused(call, path, marker)
    assert not (tmp_path / "o.safetensors").exists()


def test_convert_cli_refuses_pickled_code(capsysbinary, tmp_path):
    marker = tmp_path / "PWNED"
    path = _evil(tmp_path / "evil.pth", marker)
    for kind in ("cyclegan", "pix2pix", "fid-inception", "vgg16"):
        cli(capsysbinary, "convert", kind, str(path), "-o", "o.safetensors").assert_error(1, "refusing to load")
    assert not marker.exists() and not Path("o.safetensors").exists()
    folder = _diffusers_folder(tmp_path / "unet", weights="bin")
    _evil(folder / "diffusion_pytorch_model.bin", marker)
    cli(capsysbinary, "convert", "diffusers", str(folder), "-o", "o.safetensors").assert_error(1, "refusing to load")
    cli(capsysbinary, "sample", "ddpm", "--weights", str(folder), "-n", "1", "-o", "s.png").assert_error(
        1, "refusing to load")
    assert not marker.exists() and not Path("o.safetensors").exists() and not Path("s.png").exists()


def test_truncated_and_foreign_files_are_one_line_errors(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"w": torch.zeros(3)}, good)
    (tmp_path / "cut.pth").write_bytes(good.read_bytes()[:60])
    (tmp_path / "junk.pth").write_bytes(b"\x00garbage" * 10)
    for name in ("cut.pth", "junk.pth"):
        with pytest.raises(InputError, match="truncated or not a PyTorch weights file") as e:
            load_torch_file(tmp_path / name)
        assert "\n" not in str(e.value) and name in str(e.value)
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(InputError, match="does not hold a state dict"):
        load_torch_file(tmp_path / "list.pth")
    torch.save({"w": 3}, tmp_path / "int.pth")
    with pytest.raises(InputError, match="not a state dict of tensors"):
        load_torch_file(tmp_path / "int.pth")
    with pytest.raises(InputError, match="no such file"):
        load_torch_file(tmp_path / "missing.pth")
    torch.save({"state_dict": {"module.w": torch.ones(2)}, "epoch": 3}, tmp_path / "wrapped.pth")
    assert list(load_torch_file(tmp_path / "wrapped.pth")) == ["w"]


def test_npz_object_arrays_are_refused(tmp_path):
    from gencli.metrics.stats import load_stats

    marker = tmp_path / "PWNED"
    path = tmp_path / "stats.npz"
    np.savez(path, mu=np.array([_Pwn(marker)], dtype=object), sigma=np.eye(1))
    with pytest.raises(InputError, match="refusing to load: it holds pickled Python objects") as e:
        load_stats(path)
    assert not marker.exists(), "pickled code ran"
    assert "\n" not in str(e.value) and "stats.npz" in str(e.value)


def test_evaluate_cli_refuses_npz_object_arrays(capsysbinary, tmp_path):
    marker = tmp_path / "PWNED"
    np.savez(tmp_path / "evil.npz", mu=np.array([_Pwn(marker)], dtype=object), sigma=np.eye(1))
    np.savez(tmp_path / "good.npz", mu=np.zeros(1), sigma=np.eye(1))
    cli(capsysbinary, "evaluate", "fid", str(tmp_path / "evil.npz"), str(tmp_path / "good.npz")).assert_error(
        1, "refusing to load")
    assert not marker.exists(), "pickled code ran"


# --- the code base: one reader, no unpickling elsewhere -------------------------------------------
def _calls(tree: ast.AST):
    """(function name or None, node) for every node, with the enclosing function's name."""
    def walk(node, func):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            yield name, child
            yield from walk(child, name)
    yield from walk(tree, None)


def test_torch_load_only_in_load_torch_file_and_no_pickle_anywhere():
    allowed = ("convert/torchfile.py", "load_torch_file")
    seen = []
    for path in sorted(GENCLI.rglob("*.py")):
        rel = path.relative_to(GENCLI).as_posix()
        text = path.read_text(encoding="utf-8")
        assert "weights_only=False" not in text and "allow_pickle=True" not in text, rel
        for func, node in _calls(ast.parse(text)):
            if isinstance(node, ast.Attribute) and node.attr == "load" and ast.unparse(node.value) in (
                    "torch", "torch.serialization", "serialization"):
                seen.append((rel, func))
            if isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch.serialization"):
                assert "load" not in {a.name for a in node.names}, rel
            if isinstance(node, ast.Attribute) and ast.unparse(node.value) in ("pickle", "cPickle", "dill"):
                assert node.attr not in ("load", "loads", "Unpickler"), f"{rel}: pickle.{node.attr}"
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("np.load", "numpy.load"):
                kw = {k.arg: k.value for k in node.keywords}
                assert isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False, rel
    assert seen == [allowed], seen


def test_metrics_do_not_import_convert():
    for path in sorted((GENCLI / "metrics").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("gencli.convert"), path.name
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not node.value.startswith("gencli.convert"), path.name


def test_download_path_is_computed_in_one_place(tmp_path):
    from gencli.paths import cache_dir, download_path

    url = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/horse2zebra.pth"
    assert download_path("cyclegan", url) == cache_dir() / "downloads" / "cyclegan" / "horse2zebra.pth"
    assert download_path("pix2pix", "x.pth") == cache_dir() / "downloads" / "pix2pix" / "x.pth"
    for path in sorted(GENCLI.rglob("*.py")):
        rel = path.relative_to(GENCLI).as_posix()
        if rel == "paths.py":
            continue
        assert '"downloads"' not in path.read_text(encoding="utf-8"), rel
