"""Writing images: uint8 conversion, grids, numbered PNGs, GIFs, stdout, overwrite safety."""

from __future__ import annotations

import io
import os
import stat
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from gencli.errors import GencliError, UsageError
from gencli.io.images import load_image
from gencli.io.writers import (
    atomic_write_bytes,
    from_uint8,
    make_grid,
    to_uint8,
    write_animation,
    write_image_file,
    write_images,
)


def _batch(n: int = 3, c: int = 3, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g) * 2 - 1


class _FakeStdout:
    def __init__(self) -> None:
        self.buffer = io.BytesIO()


def test_to_uint8_rounding_and_clamp():
    x = torch.tensor([-1.0, 1.0, -2.0, 3.0, 0.0, float("nan")])
    assert to_uint8(x).tolist() == [0, 255, 0, 255, 128, 0]  # 127.5 rounds half to even -> 128
    assert to_uint8(torch.tensor([-0.5, 0.5])).tolist() == [64, 191]  # 63.75, 191.25
    u = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(to_uint8(from_uint8(u)), u)


def test_make_grid_layout():
    x = torch.zeros(5, 1, 4, 6)
    g = make_grid(x, padding=2)  # nrow = ceil(sqrt(5)) = 3 -> 2 rows
    assert g.shape == (1, 2 * 6 + 2, 3 * 8 + 2)
    assert g[0, 0, 0] == 1.0 and g[0, 2, 2] == 0.0
    assert g[0, 8, 2 + 2 * 8] == 1.0  # the missing 6th tile stays pad colour
    assert make_grid(x, nrow=5, padding=0).shape == (1, 4, 30)
    assert make_grid(x[0]).shape == (1, 4, 6)


def test_numbered_pngs(tmp_path):
    x = _batch(3)
    out = str(tmp_path / "samples") + "/"
    written = write_images(x, out)
    assert [os.path.basename(p) for p in written] == ["000000.png", "000001.png", "000002.png"]
    back = load_image(written[1])
    assert torch.allclose(back, x[1], atol=1 / 127.5 + 1e-6)
    assert sorted(os.listdir(out)) == ["000000.png", "000001.png", "000002.png"]  # no temp files


def test_grey_writes_L_and_rgb_writes_RGB(tmp_path):
    (p,) = write_images(_batch(1, c=1), str(tmp_path / "g.png"))
    with Image.open(p) as im:
        assert im.mode == "L" and im.size == (8, 8)
    (p,) = write_images(_batch(1, c=3), str(tmp_path / "c.png"))
    with Image.open(p) as im:
        assert im.mode == "RGB"


def test_names_mirror_inputs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()  # an existing folder without trailing slash
    written = write_images(_batch(2), str(out), names=["a/b/x.jpg", "y.webp"])
    assert written == [str(out / "a" / "b" / "x.png"), str(out / "y.png")]
    assert all(os.path.isfile(p) for p in written)
    with pytest.raises(UsageError):
        write_images(_batch(2), str(out), names=["../evil.png", "ok.png"], force=True)
    with pytest.raises(UsageError, match="2 output names for 3"):
        write_images(_batch(3), str(out), names=["a", "b"], force=True)


def test_refuses_overwrite_before_writing_anything(tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / "000001.png").write_bytes(b"precious")
    with pytest.raises(UsageError, match=r"000001\.png exists; pass --force"):
        write_images(_batch(3), str(out) + "/")
    assert sorted(os.listdir(out)) == ["000001.png"]  # 000000.png was not written either
    assert (out / "000001.png").read_bytes() == b"precious"
    write_images(_batch(3), str(out) + "/", force=True)
    assert sorted(os.listdir(out)) == ["000000.png", "000001.png", "000002.png"]
    with Image.open(out / "000001.png") as im:
        assert im.size == (8, 8)


def test_grid_file_and_single_image(tmp_path):
    (p,) = write_images(_batch(4, h=8, w=8), str(tmp_path / "grid.png"), nrow=2)
    with Image.open(p) as im:
        assert im.size == (2 * 10 + 2, 2 * 10 + 2)
    (p,) = write_images(_batch(1), str(tmp_path / "one.jpg"))
    with Image.open(p) as im:
        assert im.format == "JPEG" and im.size == (8, 8)
    with pytest.raises(UsageError, match="grid.png exists"):
        write_images(_batch(4), str(tmp_path / "grid.png"))
    write_images(_batch(4), str(tmp_path / "grid.png"), force=True)
    with pytest.raises(UsageError, match="unknown image extension"):
        write_images(_batch(1), str(tmp_path / "x.foo"))


def test_stdout_png(monkeypatch):
    from gencli.io.stdin import split_png_stream

    fake = _FakeStdout()
    monkeypatch.setattr(sys, "stdout", fake)
    assert write_images(_batch(4), "-", grid=True) == ["-"]
    data = fake.buffer.getvalue()
    assert data.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (22, 22)
    fake = _FakeStdout()
    monkeypatch.setattr(sys, "stdout", fake)
    assert write_images(_batch(4), "-") == ["-"]  # several images: a stream of PNGs
    parts = split_png_stream(fake.buffer.getvalue())
    assert len(parts) == 4
    for part in parts:
        with Image.open(io.BytesIO(part)) as im:
            assert im.size == (8, 8)


def test_gif_animation(tmp_path, monkeypatch):
    frames = [_batch(4, seed=i) for i in range(5)]  # each frame a 2x2 grid
    (p,) = write_animation(frames, str(tmp_path / "walk.gif"), duration_ms=50)
    with Image.open(p) as im:
        assert im.n_frames == 5 and im.size == (22, 22)
        assert im.info.get("loop") == 0
    tchw = torch.stack([_batch(1, seed=i)[0] for i in range(3)])
    with pytest.raises(UsageError, match="exists"):
        write_animation(tchw, str(tmp_path / "walk.gif"))
    write_animation(tchw, str(tmp_path / "walk.gif"), force=True)
    with Image.open(p) as im:
        assert im.n_frames == 3 and im.size == (8, 8)
    fake = _FakeStdout()
    monkeypatch.setattr(sys, "stdout", fake)
    write_animation(tchw, "-")
    assert fake.buffer.getvalue().startswith(b"GIF8")
    with pytest.raises(UsageError, match=".gif"):
        write_animation(tchw, str(tmp_path / "x.png"))


def test_nan_images_refused(tmp_path):
    x = _batch(2)
    x[1, 0, 0, 0] = float("nan")
    with pytest.raises(GencliError, match="NaN"):
        write_images(x, str(tmp_path / "o") + "/")
    assert not (tmp_path / "o").exists()


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.png"
    target.write_bytes(b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(GencliError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.png"]
    with pytest.raises(GencliError, match="cannot write .*f.png"):
        write_image_file(_batch(1)[0], target, force=True)
    assert target.read_bytes() == b"old"


def test_roundtrip_exact_uint8(tmp_path):
    u = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 5, 7), dtype=np.uint8))
    written = write_images(from_uint8(u), str(tmp_path) + "/")
    for i, p in enumerate(written):
        with Image.open(p) as im:
            assert np.array_equal(np.asarray(im).transpose(2, 0, 1), u[i].numpy())


def _durability_log(monkeypatch):
    """Record fsync calls (which inode, file or folder) and renames, in order, while still doing them."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync", st.st_ino, "dir" if stat.S_ISDIR(st.st_mode) else "file", st.st_size))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.stat(src).st_ino, str(src), str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def _assert_durable(events, target):
    """The temporary file's data is fsynced BEFORE it is renamed over ``target``, with its full
    contents, and the folder is fsynced after the rename (temp file, fsync, rename, fsync dir)."""
    renames = [i for i, e in enumerate(events) if e[0] == "replace" and e[3] == str(target)]
    assert len(renames) == 1, events
    i = renames[0]
    ino = events[i][1]
    synced = [e for e in events[:i] if e[0] == "fsync" and e[1] == ino and e[2] == "file"]
    assert synced, f"the temporary file was not fsynced before the rename: {events}"
    assert synced[-1][3] == target.stat().st_size  # synced after it was completely written
    assert any(e[0] == "fsync" and e[2] == "dir" for e in events[i + 1:]), "folder not fsynced after the rename"


def test_atomic_writes_fsync_the_data_before_the_rename(tmp_path, monkeypatch):
    from gencli.checkpoints import save_checkpoint

    events = _durability_log(monkeypatch)
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"x" * 1000)
    _assert_durable(events, target)
    events.clear()
    ck = tmp_path / "m.safetensors"
    save_checkpoint(ck, {"w": torch.zeros(4)}, {"family": "a"})
    _assert_durable(events, ck)
    events.clear()
    png = tmp_path / "one.png"
    write_image_file(_batch(1)[0], png)
    _assert_durable(events, png)
