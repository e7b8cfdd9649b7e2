"""Reading images: every PIL mode, folders/globs/stdin, corrupt input, batching."""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gencli.errors import InputError, UsageError
from gencli.io.images import (
    IMAGE_EXTENSIONS,
    image_size_of,
    iter_image_batches,
    list_images,
    load_image,
)


def _save(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def _rgb(w: int = 8, h: int = 6, seed: int = 0) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


def _f(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] tensor back to [0, 255] floats."""
    return ((x.numpy() + 1.0) * 127.5).astype(np.float64)


# ---------------------------------------------------------------------------------- modes


def test_rgb_roundtrip_exact(tmp_path):
    img = _rgb()
    x = load_image(_save(img, tmp_path / "a.png"))
    assert x.dtype == torch.float32 and x.shape == (3, 6, 8)
    assert x.min() >= -1 and x.max() <= 1
    np.testing.assert_allclose(_f(x).transpose(1, 2, 0), np.asarray(img), atol=1e-3)


def test_channels_conversion(tmp_path):
    img = _rgb()
    p = _save(img, tmp_path / "a.png")
    g = load_image(p, channels=1)
    assert g.shape == (1, 6, 8)
    # ITU-R 601 luma, as PIL's convert("L") (which rounds to integers)
    np.testing.assert_allclose(_f(g)[0], np.asarray(img.convert("L")), atol=0.51)
    assert load_image(p, channels=None).shape[0] == 3
    lp = _save(img.convert("L"), tmp_path / "l.png")
    assert load_image(lp, channels=None).shape[0] == 1
    x3 = load_image(lp, channels=3)
    assert x3.shape == (3, 6, 8) and torch.equal(x3[0], x3[2])
    with pytest.raises(UsageError):
        load_image(p, channels=4)


@pytest.mark.parametrize(
    "mode,expect_c",
    [("1", 1), ("L", 1), ("LA", 1), ("P", 3), ("RGB", 3), ("RGBA", 3), ("CMYK", 3), ("I", 1),
     ("F", 1)],
)
def test_every_mode_normalised(tmp_path, mode, expect_c):
    img = _rgb().convert(mode) if mode not in ("I", "F") else _rgb().convert("L").convert(mode)
    if mode == "CMYK":
        path = _save(img, tmp_path / "m.jpg")  # PNG cannot store CMYK
    elif mode in ("I", "F"):
        path = _save(img, tmp_path / "m.tif")
    else:
        path = _save(img, tmp_path / "m.png")
    with Image.open(path) as check:
        assert check.mode == mode
    x = load_image(path, channels=None)
    assert x.shape == (expect_c, 6, 8) and x.dtype == torch.float32
    assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
    assert load_image(path, channels=3).shape == (3, 6, 8)
    assert load_image(path, channels=1).shape == (1, 6, 8)


def test_ycbcr_and_float_modes():
    from gencli.io.images import _pil_to_float  # YCbCr only exists in memory (JPEG decodes to RGB)

    rgb = _rgb()
    ycc = _pil_to_float(rgb.convert("YCbCr"))
    assert ycc.shape == (6, 8, 3)
    np.testing.assert_allclose(ycc * 255, np.asarray(rgb.convert("YCbCr").convert("RGB")), atol=1e-6)
    f8 = _pil_to_float(rgb.convert("L").convert("F"))  # PIL reads F as 0..255
    np.testing.assert_allclose(f8[..., 0] * 255, np.asarray(rgb.convert("L")), atol=1e-4)
    unit = _pil_to_float(Image.fromarray(np.array([[0.0, 0.25, 1.0]], dtype=np.float32), "F"))
    np.testing.assert_allclose(unit[..., 0], [[0.0, 0.25, 1.0]])
    nan = _pil_to_float(Image.fromarray(np.array([[np.nan, -3.0, 5.0]], dtype=np.float32), "F"))
    assert np.isfinite(nan).all() and nan.min() >= 0 and nan.max() <= 1


def test_16bit_scaled_by_real_depth(tmp_path):
    arr = np.array([[0, 65535], [32768, 255]], dtype=np.uint16)
    p = _save(Image.fromarray(arr), tmp_path / "deep.png")
    with Image.open(p) as check:
        assert check.mode.startswith("I")
    x = load_image(p, channels=None)
    assert x.shape == (1, 2, 2)
    assert x[0, 0, 0] == -1.0 and x[0, 0, 1] == 1.0
    assert abs(float(x[0, 1, 0])) < 1e-4  # 32768 -> ~0.0
    assert float(x[0, 1, 1]) < -0.99  # 255 is dark in 16-bit, not clipped to white


def test_16bit_big_endian_mode():
    img = Image.frombytes("I;16B", (2, 1), b"\xff\xff\x80\x00")
    buf = io.BytesIO()
    img.save(buf, format="TIFF")
    x = load_image(buf.getvalue(), channels=None)
    assert x[0, 0, 0] == 1.0 and abs(float(x[0, 0, 1])) < 1e-4


def test_rgba_composited_on_white(tmp_path):
    arr = np.zeros((2, 2, 4), dtype=np.uint8)
    arr[0, 0] = (255, 0, 0, 255)  # opaque red
    arr[0, 1] = (0, 0, 0, 0)  # fully transparent -> white
    arr[1, 0] = (0, 0, 0, 128)  # half black -> mid grey
    arr[1, 1] = (0, 0, 255, 255)
    x = load_image(_save(Image.fromarray(arr, "RGBA"), tmp_path / "a.png"))
    v = _f(x)
    np.testing.assert_allclose(v[:, 0, 0], [255, 0, 0], atol=1e-3)
    np.testing.assert_allclose(v[:, 0, 1], [255, 255, 255], atol=1e-3)
    np.testing.assert_allclose(v[:, 1, 0], [127, 127, 127], atol=1.0)


def test_la_composited_on_white(tmp_path):
    arr = np.array([[[0, 0], [0, 255]]], dtype=np.uint8)
    x = load_image(_save(Image.fromarray(arr, "LA"), tmp_path / "la.png"), channels=None)
    assert x.shape == (1, 1, 2)
    assert x[0, 0, 0] == 1.0 and x[0, 0, 1] == -1.0


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    img.info["transparency"] = 0  # index 0 (black) is transparent
    p = _save(img, tmp_path / "p.png", transparency=0)
    v = _f(load_image(p))
    np.testing.assert_allclose(v[:, 0, 0], [255, 255, 255], atol=1e-3)
    np.testing.assert_allclose(v[:, 0, 1], [255, 0, 0], atol=1e-3)
    # same palette without transparency: black stays black
    img.info.pop("transparency")
    q = _save(img, tmp_path / "q.png")
    np.testing.assert_allclose(_f(load_image(q))[:, 0, 0], [0, 0, 0], atol=1e-3)


def test_resize(tmp_path):
    p = _save(_rgb(8, 6), tmp_path / "a.png")
    assert load_image(p, size=4).shape == (3, 4, 4)
    assert load_image(p, size=(3, 5)).shape == (3, 3, 5)  # (height, width)
    same = load_image(p, size=(6, 8))
    assert torch.equal(same, load_image(p))
    big = load_image(p, size=32)
    assert big.min() >= -1 and big.max() <= 1


def test_bytes_and_stdin(tmp_path, monkeypatch):
    buf = io.BytesIO()
    _rgb().save(buf, format="PNG")
    data = buf.getvalue()
    assert load_image(data).shape == (3, 6, 8)

    class FakeStdin:
        buffer = io.BytesIO(data)

    monkeypatch.setattr(sys, "stdin", FakeStdin())
    assert load_image("-").shape == (3, 6, 8)


# ------------------------------------------------------------------------------- bad input


def test_truncated_png(tmp_path):
    p = _save(_rgb(64, 64), tmp_path / "trunc.png")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="trunc.png"):
        load_image(p)


def test_text_file_named_png(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("hello, I am not an image\n")
    with pytest.raises(InputError, match="notes.png.*not a readable image"):
        load_image(p)


def test_empty_file_and_missing(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="empty.jpg"):
        load_image(p)
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="folder"):
        load_image(tmp_path)


def test_decompression_bomb(tmp_path, monkeypatch):
    p = _save(_rgb(64, 64), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 2x this raises DecompressionBombError
    with pytest.raises(InputError, match="bomb.png.*too large"):
        load_image(p)


# ---------------------------------------------------------------------------------- listing


def test_list_images_folder_recursive_case_insensitive(tmp_path):
    root = tmp_path / "in"
    _save(_rgb(), root / "b.PNG")
    _save(_rgb(), root / "a.JPG")
    _save(_rgb(), root / "sub" / "deeper" / "c.Jpeg")
    _save(_rgb(), root / ".hidden.png")
    _save(_rgb(), root / ".git" / "x.png")
    (root / "readme.txt").write_text("x")
    got = [Path(p).relative_to(root).as_posix() for p in list_images([str(root)])]
    assert got == ["a.JPG", "b.PNG", "sub/deeper/c.Jpeg"]
    top = list_images([str(root)], recursive=False)
    assert [Path(p).name for p in top] == ["a.JPG", "b.PNG"]
    assert ".png" in IMAGE_EXTENSIONS and ".tiff" in IMAGE_EXTENSIONS


def test_list_images_glob_file_and_stdin(tmp_path):
    _save(_rgb(), tmp_path / "x" / "1.png")
    _save(_rgb(), tmp_path / "x" / "y" / "2.png")
    got = list_images([str(tmp_path / "x" / "**" / "*.png"), "-", str(tmp_path / "x" / "1.png")])
    assert [Path(p).name for p in got[:2]] == ["1.png", "2.png"]
    assert got[2:] == ["-", str(tmp_path / "x" / "1.png")]


def test_list_images_errors(tmp_path):
    with pytest.raises(InputError, match="no such file or folder: .*missing"):
        list_images([str(tmp_path / "missing")])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="empty contains no images.*.png"):
        list_images([str(empty)])
    with pytest.raises(InputError, match="pattern"):
        list_images([str(tmp_path / "*.webp")])


def test_image_size_of(tmp_path):
    assert image_size_of(_save(_rgb(8, 6), tmp_path / "a.png")) == (8, 6)
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    with pytest.raises(InputError, match="bad.png"):
        image_size_of(bad)


# ---------------------------------------------------------------------------------- batches


def test_batches_stream(tmp_path):
    paths = [str(_save(_rgb(seed=i), tmp_path / f"{i}.png")) for i in range(5)]
    batches = list(iter_image_batches(iter(paths), batch_size=2, channels=3))
    assert [len(n) for n, _ in batches] == [2, 2, 1]
    assert batches[0][1].shape == (2, 3, 6, 8)
    assert [p for n, _ in batches for p in n] == paths


def test_batches_mixed_sizes(tmp_path):
    a = str(_save(_rgb(8, 6), tmp_path / "small.png"))
    b = str(_save(_rgb(16, 16), tmp_path / "large.png"))
    with pytest.raises(InputError, match=r"large\.png is 16x16 but .*small\.png is 8x6.*--size"):
        list(iter_image_batches([a, b], batch_size=4, channels=3))
    ((_, x),) = list(iter_image_batches([a, b], batch_size=4, channels=3, size=8))
    assert x.shape == (2, 3, 8, 8)


def test_batches_mixed_channels_when_keeping_modes(tmp_path):
    a = str(_save(_rgb(), tmp_path / "c.png"))
    b = str(_save(_rgb().convert("L"), tmp_path / "g.png"))
    with pytest.raises(InputError, match="--channels"):
        list(iter_image_batches([a, b], batch_size=4, channels=None))


def test_batches_skip_unreadable(tmp_path):
    good = [str(_save(_rgb(seed=i), tmp_path / f"{i}.png")) for i in range(3)]
    bad = tmp_path / "bad.png"
    bad.write_text("garbage")
    paths = [good[0], str(bad), good[1], good[2]]
    with pytest.raises(InputError, match="bad.png"):
        list(iter_image_batches(paths, batch_size=2))
    with pytest.warns(UserWarning, match="bad.png"):
        batches = list(iter_image_batches(paths, batch_size=2, on_error="skip"))
    assert [n for n, _ in batches] == [good[:2], good[2:]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match="none of the 1"):
            list(iter_image_batches([str(bad)], batch_size=2, on_error="skip"))
