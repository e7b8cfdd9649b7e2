"""gencli translate (and gencli train for a translation family) on tiny random-weight generators."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import _isolated, cli, grid_size, png_size  # noqa: F401

translation = pytest.importorskip("gencli.models.translation.cyclegan")


def _write_png(path: Path, size: tuple[int, int], mode: str = "L", value: int = 128) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


@pytest.fixture(scope="module")
def tiny_cyclegan(tmp_path_factory) -> Path:
    import torch

    from gencli.checkpoints import save_checkpoint

    gen = {"arch": "resnet", "n_blocks": 1, "ngf": 4, "norm": "instance", "input_nc": 1, "output_nc": 1}
    cfg = translation.CycleGAN.inference_config(gen, directions=["AtoB", "BtoA"], name="square2circle", image_size=8)
    torch.manual_seed(0)
    model = translation.CycleGAN.from_config(cfg)
    path = tmp_path_factory.mktemp("cyclegan") / "tiny.safetensors"
    save_checkpoint(path, model.state_dict(), {"family": "cyclegan", "config": model.config})
    return path


def test_capability_errors(capsysbinary):
    from gencli import registry

    able = registry.families_with("translate")
    hint = f"families that can: {', '.join(able)}" if able else "no family can translate yet"
    cli(capsysbinary, "translate", "ddpm", "x.png").assert_error(2, f"ddpm cannot translate; {hint}")
    cli(capsysbinary, "translate", "pix9pix", "x.png").assert_error(
        2, f"unknown model 'pix9pix'; known: {', '.join(registry.FAMILIES)}")


def test_translate_folder_file_and_stdout(capsysbinary, tiny_cyclegan, tmp_path):
    _write_png(tmp_path / "in" / "a.png", (8, 8))
    _write_png(tmp_path / "in" / "sub" / "b.png", (8, 8), value=30)
    _write_png(tmp_path / "big.png", (12, 12), value=200)
    base = ("translate", "cyclegan", "--weights", tiny_cyclegan)

    r = cli(capsysbinary, *base, "in", "big.png", "-o", "out/")
    assert r.code == 0, r.err
    assert png_size((tmp_path / "out" / "a.png").read_bytes()) == (8, 8)
    assert png_size((tmp_path / "out" / "sub" / "b.png").read_bytes()) == (8, 8)
    assert png_size((tmp_path / "out" / "big.png").read_bytes()) == (12, 12)  # output keeps the input size
    cli(capsysbinary, *base, "in", "-o", "out/").assert_error(2, "a.png exists")

    r = cli(capsysbinary, *base, "in/a.png", "-o", "-", "--direction", "BtoA")
    assert r.code == 0 and png_size(r.out) == (8, 8)
    r = cli(capsysbinary, *base, "in", "-o", "grid.png")
    assert r.code == 0 and png_size((tmp_path / "grid.png").read_bytes()) == grid_size(2, 2, 8)
    cli(capsysbinary, *base, "in", "big.png", "-o", "mixed.png").assert_error(2, "differ in size")
    cli(capsysbinary, *base, "nothing.png", "-o", "x.png").assert_error(1, "nothing.png")


def test_train_cyclegan_then_translate(capsysbinary, tmp_path):
    _write_png(tmp_path / "q.png", (8, 8))
    config = {"generator": {"ngf": 4, "n_blocks": 1}, "discriminator": {"ndf": 4, "n_layers": 1}, "pool_size": 0}
    r = cli(capsysbinary, "train", "cyclegan", "--out", "runs/cg", "--steps", "2", "--data-a", "synthetic:8",
            "--data-b", "synthetic:8", "--image-size", "8", "--batch-size", "2", "--config", json.dumps(config),
            "--log-every", "1")
    assert r.code == 0, r.err
    assert [json.loads(line)["step"] for line in Path("runs/cg/log.jsonl").read_text().splitlines()] == [1, 2]
    r = cli(capsysbinary, "translate", "cyclegan", "--weights", "runs/cg", "q.png", "-o", "-")
    assert r.code == 0, r.err
    assert png_size(r.out) == (8, 8)
    cli(capsysbinary, "train", "ddpm", "--out", "r2", "--steps", "1", "--data-a", "synthetic:8").assert_error(
        2, "--data-a")


def test_a_stream_of_pngs_on_stdin_is_translated_image_by_image(capsysbinary, tiny_cyclegan, tmp_path, monkeypatch):
    """`gencli sample ... -o - | gencli translate MODEL - -o -`: each image of the stream on its own."""
    import io
    import sys

    from gencli.io.stdin import split_png_stream

    files = [_write_png(tmp_path / "in" / f"{i}.png", (8, 8), value=40 * i + 10) for i in range(3)]
    stream = b"".join(p.read_bytes() for p in files)
    monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": io.BytesIO(stream)})())
    base = ("translate", "cyclegan", "--weights", tiny_cyclegan)
    r = cli(capsysbinary, *base, "-", "-o", "-")
    assert r.code == 0, r.err
    parts = split_png_stream(r.out)
    ref = cli(capsysbinary, *base, "in", "-o", "ref/")
    assert ref.code == 0, ref.err
    assert parts == [(tmp_path / "ref" / f"{i}.png").read_bytes() for i in range(3)]
    monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": io.BytesIO(stream)})())
    r = cli(capsysbinary, *base, "-", "-o", "named/")
    assert r.code == 0 and sorted(p.name for p in (tmp_path / "named").iterdir()) == [
        "stdin-000000.png", "stdin-000001.png", "stdin-000002.png"]
    monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": io.BytesIO(stream[:-5])})())
    cli(capsysbinary, *base, "-", "-o", "-").assert_error(1, "truncated")
