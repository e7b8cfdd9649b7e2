"""Training data for the translation families, in the form the trainer consumes.

The trainer asks a dataset for ``len()`` and ``batch(indices) -> (x, y)``; here both are image
tensors (float NCHW in [-1, 1]):

- :class:`UnpairedDataset` (CycleGAN, the official "unaligned" mode): ``(A images, B images)``;
  A follows the trainer's shuffled indices, B is drawn at random (from a generator seeded by the
  batch's indices, so a resumed run draws the same images). ``len`` is max(|A|, |B|).
- :class:`PairedDataset` (pix2pix): ``(A, B)`` aligned pairs from
  * a folder of ``A|B`` images side by side (the official "aligned" layout; ``DIR/train`` is used
    when it exists), split down the middle;
  * two folders with the same relative file names (``DIR/A`` and ``DIR/B``, or
    ``--data-a``/``--data-b``); names are matched without their extensions;
  * ``edges:SPEC``: B is any dataset SPEC and A its edge map by :func:`edges`.
  ``direction="BtoA"`` swaps A and B, as the official ``--direction``.

A domain is any dataset spec that :func:`gencli.io.datasets.resolve_dataset` accepts, optionally
restricted to one class: ``fashion-mnist:sneaker``, ``fashion-mnist:"ankle boot"`` or
``fashion-mnist:9`` (class names match ignoring case, spaces and punctuation), or an image
folder with class sub-folders ``DIR:CLASS``.

Augmentation: optional random horizontal flips (``flip=True``; the official default for photos,
off by default here), independently for A and B when unpaired, identically for a pair.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from gencli.errors import InputError, UsageError

__all__ = ["edges", "EDGE_THRESHOLD", "domain_dataset", "UnpairedDataset", "PairedDataset",
           "build_training_data", "take_images"]

#: Threshold of the edge detector on the Sobel gradient magnitude of [0, 1] intensities.
EDGE_THRESHOLD = 0.6
_BLUR = torch.tensor([1.0, 2.0, 1.0])
_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def edges(images: torch.Tensor, threshold: float = EDGE_THRESHOLD) -> torch.Tensor:
    """The fixed edge detector behind ``edges:SPEC`` (the small analogue of edges2shoes' HED edges).

    Greyscale (ITU-R 601 luma) in [0, 1] -> 3x3 binomial blur ([1,2,1]/4 in each direction) ->
    3x3 Sobel gradients -> magnitude > ``threshold`` (0.6) is an edge. Replicate padding at the
    borders. Returns one channel in [-1, 1]: black (-1) edges on white (+1), like edges2shoes.
    """
    x = images[None] if images.dim() == 3 else images
    x = x.float()
    if x.shape[1] == 3:
        w = torch.tensor((0.299, 0.587, 0.114), device=x.device).view(1, 3, 1, 1)
        x = (x * w).sum(1, keepdim=True)
    elif x.shape[1] != 1:
        raise UsageError(f"edges need 1- or 3-channel images, got {x.shape[1]}")
    g = (x + 1.0) / 2.0
    blur = (_BLUR[:, None] * _BLUR[None, :] / 16.0).to(g.device).view(1, 1, 3, 3)
    sob = _SOBEL.to(g.device)

    def conv(t: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (1, 1, 1, 1), mode="replicate"), k.view(1, 1, 3, 3))

    g = conv(g, blur)
    mag = torch.sqrt(conv(g, sob) ** 2 + conv(g, sob.t()) ** 2)
    out = torch.where(mag > threshold, -1.0, 1.0)
    return out if images.dim() == 4 else out[0]


# --------------------------------------------------------------------------------------------
# Domains


def take_images(ds: Any, indices: torch.Tensor) -> torch.Tensor:
    """Float NCHW images of ``ds`` at ``indices`` (uses ``ds.batch`` when there is one)."""
    if hasattr(ds, "batch"):
        return ds.batch(indices)[0]
    return torch.stack([ds[int(i)][0] for i in indices])


class _Subset:
    """Items ``indices`` of a dataset (keeps its name/channels/image_size)."""

    def __init__(self, ds: Any, indices: Sequence[int], name: str):
        self.ds, self.indices, self.name = ds, list(indices), name
        self.channels, self.image_size = ds.channels, ds.image_size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.ds[self.indices[i]]


def _norm_name(s: str) -> str:
    return re.sub(r"[^0-9a-z]", "", s.lower())


def _filter_class(ds: Any, cls: str, spec: str) -> Any:
    names = list(getattr(ds, "class_names", []) or [])
    labels = getattr(ds, "labels", None)
    if labels is None or not names:
        raise UsageError(f"{spec}: the dataset has no classes to choose {cls!r} from")
    wanted = _norm_name(cls)
    idx = next((i for i, n in enumerate(names) if _norm_name(n) == wanted), None)
    if idx is None and cls.strip().isdigit() and int(cls) < len(names):
        idx = int(cls)
    if idx is None:
        raise UsageError(f"{spec}: no class {cls!r}; classes: {', '.join(names)}")
    keep = (torch.as_tensor(labels) == idx).nonzero().flatten()
    if len(keep) == 0:
        raise InputError(f"{spec}: no images of class {names[idx]!r}")
    label = names[idx]
    if hasattr(ds, "images"):  # TensorImageDataset: stay in memory, keep fast batch()
        from gencli.io.tensor_dataset import TensorImageDataset

        sub = TensorImageDataset(ds.images[keep], ds.labels[keep], names, f"{ds.name}:{label}")
        return sub
    return _Subset(ds, keep.tolist(), f"{getattr(ds, 'name', spec)}:{label}")


def domain_dataset(spec: str, *, split: str = "train", channels: int | None = None, size: Any = None) -> Any:
    """A dataset of one domain: a dataset spec, optionally ``SPEC:CLASS`` for one of its classes."""
    from gencli.io.datasets import resolve_dataset

    spec = str(spec).strip()
    if not spec:
        raise UsageError("empty dataset spec")
    base, cls = spec, None
    if ":" in spec and not Path(spec).expanduser().exists() and not spec.lower().startswith("synthetic:"):
        base, _, cls = spec.rpartition(":")
        cls = cls.strip().strip("'\"")
    ds = resolve_dataset(base, split=split, channels=channels, size=size)
    if cls:
        ds = _filter_class(ds, cls, spec)
    if len(ds) == 0:
        raise InputError(f"{spec}: no images")
    return ds


def _hw(ds: Any) -> tuple[int, int]:
    s = ds.image_size
    return (s, s) if isinstance(s, int) else (int(s[0]), int(s[1]))


def _rng(indices: torch.Tensor, salt: int) -> torch.Generator:
    """A generator seeded by the batch's indices: the random draws of a batch are a pure function
    of which items it holds (themselves a function of the trainer's seed and step), so they do not
    depend on, or disturb, the global RNG, and a resumed run draws exactly the same."""
    digest = hashlib.blake2b(indices.numpy().astype("<i8").tobytes(), digest_size=8,
                             salt=salt.to_bytes(8, "little")).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


def _flip(x: torch.Tensor, enabled: bool, g: torch.Generator | None = None) -> torch.Tensor:
    if not enabled:
        return x
    mask = torch.rand(x.shape[0], generator=g) < 0.5
    if mask.any():
        x = x.clone()
        x[mask] = x[mask].flip(-1)
    return x


class UnpairedDataset:
    """Two unaligned image sets: ``batch(idx) -> (A[idx mod |A|], B[random])``."""

    def __init__(self, a: Any, b: Any, *, flip: bool = False):
        if _hw(a) != _hw(b):
            raise UsageError(f"domain A images are {_hw(a)[1]}x{_hw(a)[0]} but domain B images are "
                             f"{_hw(b)[1]}x{_hw(b)[0]}; pass --size N to train both at one size")
        self.a, self.b, self.flip = a, b, flip
        self.image_size = a.image_size
        self.channels = int(a.channels)
        self.channels_b = int(b.channels)
        self.num_classes = None
        self.class_names: list[str] = []
        self.name = f"{getattr(a, 'name', 'A')} <-> {getattr(b, 'name', 'B')}"

    @property
    def config_overrides(self) -> dict[str, Any]:
        """What the family config must know about this data (pass to ``config_for_data``)."""
        return {"channels_b": self.channels_b,
                "domains": {"A": getattr(self.a, "name", "A"), "B": getattr(self.b, "name", "B")}}

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        g = _rng(indices, 1)
        xa = take_images(self.a, indices % len(self.a))
        xb = take_images(self.b, torch.randint(len(self.b), (len(indices),), generator=g))
        return _flip(xa, self.flip, g), _flip(xb, self.flip, g)

    def __getitem__(self, i: int):
        a, b = self.batch(torch.tensor([i]))
        return a[0], b[0]


class PairedDataset:
    """Aligned pairs: ``batch(idx) -> (A, B)`` (see the module docstring for the layouts)."""

    def __init__(self, kind: str, *, source: Any = None, a: Any = None, b: Any = None,
                 direction: str = "AtoB", flip: bool = False, name: str = "paired"):
        if direction not in ("AtoB", "BtoA"):
            raise UsageError(f"--direction must be AtoB or BtoA, got {direction!r}")
        self.kind, self.source, self.a, self.b = kind, source, a, b
        self.swap, self.flip, self.name = direction == "BtoA", flip, name
        if kind == "aligned":
            h, w2 = _hw(source)
            if w2 % 2:
                raise InputError(f"{name}: aligned A|B images must have an even width, got {w2}")
            hw, ca, cb = (h, w2 // 2), source.channels, source.channels
        elif kind == "folders":
            if _hw(a) != _hw(b):
                raise InputError(f"{name}: A images are {_hw(a)[1]}x{_hw(a)[0]} but B images are "
                                 f"{_hw(b)[1]}x{_hw(b)[0]}; pass --size N")
            hw, ca, cb = _hw(a), a.channels, b.channels
        elif kind == "edges":
            hw, ca, cb = _hw(source), 1, source.channels
        else:
            raise ValueError(kind)
        if self.swap:
            ca, cb = cb, ca
        self.image_size: int | tuple[int, int] = hw[0] if hw[0] == hw[1] else hw
        self.channels, self.output_channels = int(ca), int(cb)
        self.num_classes = None
        self.class_names: list[str] = []

    @property
    def config_overrides(self) -> dict[str, Any]:
        return {"output_channels": self.output_channels}

    def __len__(self) -> int:
        return len(self.source) if self.kind in ("aligned", "edges") else len(self.a)

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        indices = torch.as_tensor(indices, dtype=torch.long)
        if self.kind == "aligned":
            ab = take_images(self.source, indices)
            w = ab.shape[-1] // 2
            xa, xb = ab[..., :w], ab[..., w:]
        elif self.kind == "folders":
            xa, xb = take_images(self.a, indices), take_images(self.b, indices)
        else:
            xb = take_images(self.source, indices)
            xa = edges(xb)
        if self.swap:
            xa, xb = xb, xa
        if self.flip:
            mask = torch.rand(xa.shape[0], generator=_rng(indices.cpu(), 2)) < 0.5
            if mask.any():
                xa, xb = xa.clone(), xb.clone()
                xa[mask], xb[mask] = xa[mask].flip(-1), xb[mask].flip(-1)
        return xa.contiguous(), xb.contiguous()

    def __getitem__(self, i: int):
        a, b = self.batch(torch.tensor([i]))
        return a[0], b[0]


class _NamedFolder:
    """Images of a folder in a given order (for A/B folders matched by name)."""

    def __init__(self, paths: list[str], channels: int | None, size: Any, name: str):
        from gencli.io.images import image_size_of, load_image

        self.paths, self._size, self.name = paths, size, name
        self.channels = channels if channels is not None else int(load_image(paths[0], channels=None).shape[0])
        if size is None:
            w, h = image_size_of(paths[0])
        else:
            h, w = (size, size) if isinstance(size, int) else size
        self._hw = (h, w)
        self.image_size = h if h == w else (h, w)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from gencli.io.images import load_image

        img = load_image(self.paths[i], channels=self.channels, size=self._size)
        if tuple(img.shape[1:]) != self._hw:
            raise InputError(f"{self.paths[i]} is {img.shape[2]}x{img.shape[1]} but {self.paths[0]} is "
                             f"{self._hw[1]}x{self._hw[0]}; pass --size N to resize all images")
        return img, -1


def _matched_folders(dir_a: Path, dir_b: Path, ch_a: int | None, ch_b: int | None, size: Any,
                     name: str) -> PairedDataset:
    from gencli.io.images import list_images

    def index(folder: Path) -> dict[str, str]:
        out = {}
        for p in list_images([str(folder)]):
            key = str(Path(os.path.relpath(p, folder)).with_suffix(""))
            out[key] = p
        return out

    ia, ib = index(dir_a), index(dir_b)
    common = sorted(set(ia) & set(ib))
    missing = sorted(set(ia) ^ set(ib))
    if missing:
        where = dir_b if missing[0] in ia else dir_a
        raise InputError(f"{len(missing)} image(s) have no partner with the same name, e.g. {missing[0]!r} "
                         f"is missing in {where}; paired folders need matching file names")
    a = _NamedFolder([ia[k] for k in common], ch_a, size, f"{dir_a.name}")
    b = _NamedFolder([ib[k] for k in common], ch_b, size, f"{dir_b.name}")
    return PairedDataset("folders", a=a, b=b, name=name)


def _paired(data: str | None, data_a: str | None, data_b: str | None, *, split: str, ch_a: int | None,
            ch_b: int | None, size: Any, direction: str, flip: bool) -> PairedDataset:
    # ch_a / ch_b: channels of the files' A and B sides (before a BtoA swap); None keeps the data's
    if data_a or data_b:
        if not (data_a and data_b) or data:
            raise UsageError("pix2pix takes either --data DIR or both --data-a DIR and --data-b DIR")
        ds = _matched_folders(Path(data_a).expanduser(), Path(data_b).expanduser(), ch_a, ch_b, size,
                              f"{data_a} + {data_b}")
    elif not data:
        raise UsageError("pix2pix needs paired data: --data DIR (A|B images side by side, or A/ and B/ "
                         "sub-folders with matching names) or --data edges:DATASET")
    elif data.startswith("edges:"):
        src = domain_dataset(data[len("edges:"):], split=split, channels=ch_b, size=size)
        ds = PairedDataset("edges", source=src, name=data)
    else:
        root = Path(data).expanduser()
        if not root.is_dir():
            raise InputError(f"no such folder: {data} (pix2pix needs a folder of paired images)")
        if (root / split).is_dir():
            root = root / split
        if (root / "A").is_dir() and (root / "B").is_dir():
            da, db = root / "A", root / "B"
            if (da / split).is_dir() and (db / split).is_dir():
                da, db = da / split, db / split
            ds = _matched_folders(da, db, ch_a, ch_b, size, data)
        else:
            from gencli.io.image_folder import ImageFolderDataset

            hw = None if size is None else ((size, 2 * size) if isinstance(size, int) else (size[0], 2 * size[1]))
            if ch_a is not None and ch_b is not None and ch_a != ch_b:
                raise UsageError(f"{data}: the A and B halves of aligned images share one channel count")
            chan = ch_a if ch_a is not None else ch_b
            src = ImageFolderDataset(root, channels=3 if chan is None else chan, size=hw)
            ds = PairedDataset("aligned", source=src, name=data)
    if direction != "AtoB" or flip:
        ds = PairedDataset(ds.kind, source=ds.source, a=ds.a, b=ds.b, direction=direction, flip=flip,
                           name=ds.name)
    return ds


def _check_channels(channels: int | None, channels_b: int | None) -> tuple[int | None, int | None]:
    for value, option in ((channels, "--channels"), (channels_b, "channels_b")):
        if value is not None and value not in (1, 3):
            raise UsageError(f"{option} must be 1 or 3, got {value}")
    return channels, channels if channels_b is None else channels_b


def unpaired_training_data(*, data_a: str | None = None, data_b: str | None = None, size: Any = None,
                           channels: int | None = None, direction: str | None = None, flip: bool = False,
                           split: str = "train", channels_b: int | None = None) -> "UnpairedDataset":
    """Two domains (``data_a``, ``data_b``: any dataset spec, ``fashion-mnist:CLASS`` too) ->
    :class:`UnpairedDataset`; ``direction="BtoA"`` swaps them. ``channels`` converts the images
    the model takes (A) and ``channels_b`` (default: the same) those it produces (B), after any
    swap; None keeps the data's own (a resumed run passes its config's)."""
    ca, cb = _check_channels(channels, channels_b)
    if not (data_a and data_b):
        raise UsageError("cyclegan needs both --data-a and --data-b")
    if direction == "BtoA":
        b = domain_dataset(data_a, split=split, channels=cb, size=size)
        a = domain_dataset(data_b, split=split, channels=ca, size=size)
    else:
        a = domain_dataset(data_a, split=split, channels=ca, size=size)
        b = domain_dataset(data_b, split=split, channels=cb, size=size)
    return UnpairedDataset(a, b, flip=flip)


def paired_training_data(*, data: str | None = None, data_a: str | None = None, data_b: str | None = None,
                         size: Any = None, channels: int | None = None, direction: str | None = None,
                         flip: bool = False, split: str = "train", channels_b: int | None = None) -> PairedDataset:
    """Pairs: ``data`` (aligned folder, A/B folders, or ``edges:SPEC``) or ``data_a`` + ``data_b``
    folders matched by name -> :class:`PairedDataset`. Channels as :func:`unpaired_training_data`;
    edge maps are always one channel. The result has ``image_size``, ``channels`` and
    ``config_overrides`` for ``config_for_data``."""
    ca, cb = _check_channels(channels, channels_b)
    direction = direction or "AtoB"
    swap = direction == "BtoA"
    return _paired(data, data_a, data_b, split=split, ch_a=cb if swap else ca, ch_b=ca if swap else cb,
                   size=size, direction=direction, flip=flip)
