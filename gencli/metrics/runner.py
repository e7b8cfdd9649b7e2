"""Turning evaluation inputs into features and statistics, streaming, with a content-keyed cache.

An input (:class:`Source`) is one of

* ``images``: files, folders or globs (read with :mod:`gencli.io.images`: every PIL mode, mixed
  sizes; each image is resized to the network's input on its own, so mixed sizes just work);
* ``dataset``: a registered dataset (``fashion-mnist``, ``fashion-mnist:test``, ``mnist``);
* ``stats``: a ``.npz`` with ``mu``/``sigma`` (FID only);
* ``samples``: images drawn on the fly from a model (a callable given by the CLI); samples are
  rounded to 8-bit levels first, so they score exactly as the same samples saved as PNGs.

:func:`extract` streams batches through a feature extractor, accumulating float64 mean and
covariance (memory independent of the number of images) and keeping the features/logits only
when a metric needs them (KID, precision/recall, IS). Decoding runs in a background thread.

Statistics are cached in ``$GENCLI_CACHE/stats`` keyed by the *content* of the input (sha256 of
every file's bytes, order-independent, or of a dataset's pixels) and the extractor identity
(weights sha256, preprocessing, dims), so renaming or moving a folder keeps the cache, and
changing a single pixel invalidates it.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gencli.errors import InputError, UsageError
from gencli.metrics.stats import FeatureStats, RunningStats, load_stats

__all__ = ["Source", "Extracted", "resolve_source", "samples_source", "extract"]

_DATASET_SPLITS = ("train", "test")
#: Model samples are drawn in batches of this size whatever --batch-size is (as `gencli sample`
#: draws them: the same --seed gives the same images as `gencli sample`).
SAMPLE_BATCH = 64


@dataclass
class Source:
    kind: str  # images | dataset | stats | samples
    label: str
    count: int | None = None
    paths: list[str] = field(default_factory=list)
    dataset: Any = None
    stats: FeatureStats | None = None
    sample_fn: Callable[[range], Iterator[torch.Tensor]] | None = None  # indices -> [-1,1] NCHW batches
    cacheable: bool = True
    _content_key: str | None = None

    def content_key(self) -> str | None:
        """sha256 identifying the pixels of this input (None for samples and stats)."""
        if self._content_key is None:
            if self.kind == "images":
                self._content_key = _files_digest(self.paths)
            elif self.kind == "dataset":
                h = hashlib.sha256(b"dataset\0")
                h.update(np.ascontiguousarray(self.dataset.images.numpy()).data)
                self._content_key = h.hexdigest()
        return self._content_key


def _files_digest(paths: list[str]) -> str:
    digests = []
    for p in paths:
        h = hashlib.sha256()
        try:
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        except OSError as e:
            raise InputError(f"{p}: cannot read ({e.strerror or e})") from None
        digests.append(h.digest())
    digests.sort()  # content, not order or names
    total = hashlib.sha256(b"images\0")
    for d in digests:
        total.update(d)
    return total.hexdigest()


def _dataset_alias(spec: str) -> tuple[str, str] | None:
    from gencli.io.named_datasets import DATASETS

    name, _, split = spec.partition(":")
    key = name.strip().lower()
    for ds, info in DATASETS.items():
        if ds == "synthetic":
            continue
        if key == ds or key in info.aliases:
            if split and split not in _DATASET_SPLITS:
                raise UsageError(f"{spec!r}: unknown split {split!r}; use {ds}:train or {ds}:test")
            return ds, split or "train"
    return None


def resolve_source(spec: str) -> Source:
    """What the user typed (folder, glob, file, .npz, dataset[:split]) -> a :class:`Source`."""
    from gencli.io.images import list_images

    spec = str(spec)
    if spec.lower().endswith(".npz"):
        st = load_stats(spec)
        return Source("stats", spec, count=st.n or None, stats=st)
    if not os.path.exists(spec):
        alias = _dataset_alias(spec)
        if alias is not None:
            from gencli.io.datasets import resolve_dataset

            name, split = alias
            ds = resolve_dataset(name, split=split)
            return Source("dataset", f"{name}:{split}", count=len(ds), dataset=ds)
        if spec.lower().startswith("synthetic"):
            from gencli.io.datasets import resolve_dataset

            ds = resolve_dataset(spec, split="train")
            return Source("dataset", spec, count=len(ds), dataset=ds)
    paths = list_images(spec)
    stdin = spec == "-"
    return Source("images", "stdin" if stdin else spec, count=len(paths), paths=paths, cacheable=not stdin)


def samples_source(label: str, n: int, sample_fn: Callable[[range], Iterator[torch.Tensor]]) -> Source:
    """Images drawn on the fly: ``sample_fn(indices)`` yields the images of those indices, in
    order, batch by batch."""
    return Source("samples", label, count=n, sample_fn=sample_fn, cacheable=False)


# --------------------------------------------------------------------------------------------
# Batches


def _prefetch(gen: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``gen`` in a background thread, ``depth`` items ahead; exceptions are re-raised here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for item in gen:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(e)
            return
        q.put(done)

    t = threading.Thread(target=work, name="gencli-decode", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def _image_batches(paths: list[str], batch_size: int, channels: int,
                   on_error: str) -> Iterator[tuple[list[torch.Tensor], list[str]]]:
    """``(images, skipped messages)`` batches; warnings are issued by the consumer's thread."""
    from gencli.io.images import load_image

    batch: list[torch.Tensor] = []
    skipped: list[str] = []
    read = 0
    for p in paths:
        try:
            x = load_image(p, channels=channels)
        except InputError as e:
            if on_error == "skip":
                skipped.append(f"skipping {e}")
                continue
            raise InputError(f"{e} (pass --skip-bad to skip unreadable images)") from None
        read += 1
        batch.append(x)
        if len(batch) == batch_size:
            yield batch, skipped
            batch, skipped = [], []
    if batch or skipped:
        yield batch, skipped
    if read == 0:
        raise InputError(f"none of the {len(paths)} images could be read")


def _group_forward(extractor: Any, images: list[torch.Tensor], logits: bool) -> dict[str, torch.Tensor]:
    """Run the extractor over same-shape groups of a list of CHW images, keeping the order."""
    shapes: dict[tuple[int, ...], list[int]] = {}
    for i, x in enumerate(images):
        shapes.setdefault(tuple(x.shape), []).append(i)
    if len(shapes) == 1:
        return extractor(torch.stack(images), logits=logits)
    parts: dict[str, list[tuple[list[int], torch.Tensor]]] = {}
    for idx in shapes.values():
        out = extractor(torch.stack([images[i] for i in idx]), logits=logits)
        for k, v in out.items():
            parts.setdefault(k, []).append((idx, v))
    merged = {}
    for k, chunks in parts.items():
        order = torch.tensor([i for idx, _ in chunks for i in idx])
        values = torch.cat([v for _, v in chunks])
        merged[k] = values[torch.argsort(order)]
    return merged


# --------------------------------------------------------------------------------------------
# Extraction


@dataclass
class Extracted:
    source: Source
    stats: FeatureStats | None = None
    features: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    n: int = 0
    cached: bool = False


def _cache_path(source: Source, identity: str, on_error: str) -> Path | None:
    from gencli.paths import cache_dir

    key = source.content_key() if source.cacheable else None
    if key is None:
        return None
    tag = hashlib.sha256(f"{key}\0{identity}\0{on_error}".encode()).hexdigest()[:32]
    return cache_dir() / "stats" / f"{tag}.npz"


def extract(
    source: Source,
    extractor: Any,
    *,
    need_stats: bool = True,
    need_features: bool = False,
    need_logits: bool = False,
    batch_size: int | None = None,
    on_error: str = "fail",
    use_cache: bool = True,
    progress: Callable[[int], None] | None = None,
    group: Any = None,
) -> Extracted:
    """Features/statistics of ``source`` under ``extractor`` (see the module docstring).

    ``group`` (a :class:`gencli.training.distributed.Group` under torchrun): each rank extracts
    the contiguous share of the inputs it is given (by index, as `gencli sample` splits images),
    then the ranks merge: statistics as exact float64 (count, mean, centred sum of squares)
    triples combined in rank order, features and logits gathered in index order. Every rank
    returns the whole result."""
    if source.kind == "stats":
        if need_features or need_logits:
            raise UsageError(f"{source.label} holds only mean/covariance statistics: KID, IS and "
                             "precision/recall need images")
        st = source.stats
        assert st is not None
        if st.dims != extractor.dims:
            raise InputError(f"{source.label} has {st.dims}-d statistics but --features {extractor.name} "
                             f"gives {extractor.dims}-d features (use the same --features/--dims)")
        return Extracted(source, stats=st, n=st.n, cached=True)
    if need_logits and not extractor.has_logits:
        raise UsageError(f"--features {extractor.name} has no class logits: the Inception Score needs "
                         "inception or fmnist")
    cache_file = None
    if use_cache and need_stats and not (need_features or need_logits):
        cache_file = _cache_path(source, extractor.identity, on_error)
        st = _read_cache(cache_file, extractor.dims)
        if group is not None and group.any(st is None):
            st = None  # every rank extracts (and merges) unless every rank has the cache
        if st is not None:
            if progress is not None:
                progress(st.n)
            return Extracted(source, stats=st, n=st.n, cached=True)
    bs = batch_size or extractor.default_batch_size
    running = RunningStats() if need_stats else None
    feats: list[torch.Tensor] = []
    logits: list[torch.Tensor] = []
    n = 0
    total = source.count if source.count is not None else 0
    part = range(total)
    if group is not None and group.active:
        from gencli.training.distributed import share

        part = share(total, group.rank, group.world)
    with torch.inference_mode():
        for out in _forward_batches(source, extractor, bs, on_error, need_logits, part):
            f = out["features"]
            if not torch.isfinite(f).all():
                raise InputError(f"{source.label}: the feature extractor produced NaN/inf values "
                                 "(corrupt weights?)")
            if running is not None:
                running.update(f)
            if need_features:
                feats.append(f.cpu())
            if need_logits:
                logits.append(out["logits"].cpu())
            n += f.shape[0]
            if progress is not None:
                progress(f.shape[0])
    if group is not None and group.active:
        running, feats, logits, n = _merge_ranks(group, running, feats, logits, n)
    if n < 2:
        raise InputError(f"{source.label}: need at least 2 images, got {n}")
    res = Extracted(source, n=n)
    if running is not None:
        st = running.finalize()
        st.meta = {"features": extractor.name, "identity": extractor.identity, "source": source.label}
        res.stats = st
        if use_cache and (group is None or group.main):  # one writer under torchrun
            cache_file = cache_file or _cache_path(source, extractor.identity, on_error)
            if cache_file is not None:
                _write_cache(cache_file, st)
    if need_features:
        res.features = torch.cat(feats)
    if need_logits:
        res.logits = torch.cat(logits)
    return res


def _merge_ranks(group: Any, running: RunningStats | None, feats: list[torch.Tensor],
                 logits: list[torch.Tensor], n: int) -> tuple[RunningStats | None, list, list, int]:
    """Every rank's share, gathered on every rank in rank (= index) order."""
    import torch.distributed as dist

    mine = {"n": n, "stats": running.state() if running is not None else None,
            "feats": torch.cat(feats) if feats else None, "logits": torch.cat(logits) if logits else None}
    parts: list[Any] = [None] * group.world
    dist.all_gather_object(parts, mine)
    merged = None
    if running is not None:
        merged = RunningStats()
        for p in parts:
            merged.merge_state(*p["stats"])
    return (merged, [p["feats"] for p in parts if p["feats"] is not None],
            [p["logits"] for p in parts if p["logits"] is not None], sum(p["n"] for p in parts))


def _read_cache(path: Path | None, dims: int) -> FeatureStats | None:
    if path is None or not path.is_file():
        return None
    try:
        st = load_stats(path)
    except InputError:
        return None  # a damaged cache entry is recomputed and rewritten
    return st if st.dims == dims and st.n >= 2 else None


def _write_cache(path: Path, st: FeatureStats) -> None:
    from gencli.metrics.stats import save_stats

    try:
        save_stats(path, st, force=True)
    except Exception as e:  # noqa: BLE001 - a cache that cannot be written is not an error
        warnings.warn(f"could not cache statistics in {path}: {e}", UserWarning, stacklevel=2)


def _forward_batches(source: Source, extractor: Any, bs: int, on_error: str,
                     logits: bool, part: range) -> Iterator[dict[str, torch.Tensor]]:
    """Feature batches of the inputs with indices ``part`` (all of them, or a rank's share)."""
    channels = 1 if extractor.name == "fmnist" else 3
    if source.kind == "images":
        paths = source.paths[part.start:part.stop]
        for batch, skipped in _prefetch(_image_batches(paths, bs, channels, on_error)):
            for msg in skipped:
                warnings.warn(msg, UserWarning, stacklevel=1)
            if batch:
                yield _group_forward(extractor, batch, logits)
    elif source.kind == "dataset":
        ds = source.dataset
        for start in range(part.start, part.stop, bs):
            x, _ = ds.batch(slice(start, min(start + bs, part.stop)))
            yield extractor(x, logits=logits)
    elif source.kind == "samples":
        assert source.sample_fn is not None and source.count is not None
        for x in source.sample_fn(part):
            x = ((x.float().clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1  # 8-bit, as a saved PNG
            for start in range(0, x.shape[0], bs):
                yield extractor(x[start:start + bs], logits=logits)
    else:  # pragma: no cover
        raise ValueError(source.kind)
