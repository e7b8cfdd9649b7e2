"""Finding the weights of the metric networks (FID InceptionV3, VGG16 for precision/recall).

Order of resolution (first hit wins):

1. ``--weights REF``: a local ``.safetensors``, a foreign ``.pth`` (converted once into gencli's
   cache, keyed by its sha256), or a Hub reference (``org/repo``, ``hf://org/repo/file``);
2. a bundled file of the standard name in ``weights/`` (not shipped by default: 91 MB);
3. gencli's cache: ``$GENCLI_CACHE/weights/<name>.safetensors`` (``gencli convert ... -o`` there,
   or a previous automatic conversion);
4. the original ``.pth`` in torch's hub cache (``$TORCH_HOME/hub/checkpoints``), as left there by
   pytorch-fid, torch-fidelity or torchvision: converted once, no download;
5. the Hugging Face Hub (``$GENCLI_FID_INCEPTION`` / ``$GENCLI_VGG16`` override the reference),
   through huggingface_hub and its cache (so ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` work).

When none works, one :class:`~gencli.errors.WeightsNotFound` line lists the ways out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gencli.errors import GencliError, WeightsNotFound
from gencli.paths import bundled_weights_dir, cache_dir

__all__ = ["NETWORKS", "NetworkWeights", "resolve_network_weights", "torch_hub_dir"]


@dataclass(frozen=True)
class NetworkWeights:
    name: str  # as in `gencli pull NAME` / `gencli convert NAME`
    filename: str  # the standard safetensors name
    hub_ref: str  # default Hub reference of the safetensors file
    env: str  # environment variable overriding hub_ref
    pth_names: tuple[str, ...]  # original files looked for in torch's hub cache
    pth_format: str  # the gencli.formats entry that converts its .pth to safetensors
    hint: str  # a last way out, specific to the network
    origin: str  # where the original .pth comes from


NETWORKS: dict[str, NetworkWeights] = {
    "fid-inception": NetworkWeights(
        name="fid-inception",
        filename="fid_inception.safetensors",
        hub_ref="hf://gencli/fid-inception/fid_inception.safetensors",
        env="GENCLI_FID_INCEPTION",
        pth_names=("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth"),
        pth_format="fid-inception",
        origin="pytorch-fid's GitHub release asset (github.com/mseitzer/pytorch-fid/releases, FID weights); "
               "pytorch-fid and torch-fidelity download it into torch's hub cache",
        hint="or, for 28x28 grey images, use the bundled classifier: --features fmnist",
    ),
    "vgg16": NetworkWeights(
        name="vgg16",
        filename="vgg16.safetensors",
        hub_ref="hf://gencli/vgg16/vgg16.safetensors",
        env="GENCLI_VGG16",
        pth_names=("vgg16-397923af.pth",),
        pth_format="vgg16",
        origin="torchvision's VGG16 weights (download.pytorch.org/models); torchvision and torch-fidelity "
               "download it into torch's hub cache",
        hint="or, for 28x28 grey images, use the bundled classifier: --features fmnist",
    ),
}


def torch_hub_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch``), without importing torch."""
    home = os.environ.get("TORCH_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME")
        home = os.path.join(xdg, "torch") if xdg else os.path.join(Path.home(), ".cache", "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def _convert_cached(spec: NetworkWeights, pth: Path) -> Path:
    """Convert a foreign ``.pth`` once into the cache (keyed by sha256); return the safetensors."""
    from gencli import formats
    from gencli.hub.checksums import sha256_file

    digest = sha256_file(pth)
    out = cache_dir() / "weights" / f"{Path(spec.filename).stem}-{digest[:16]}.safetensors"
    if out.is_file():
        return out
    try:
        return formats.convert(spec.pth_format, pth, out, force=True)
    except OSError as e:
        raise GencliError(f"cannot write the converted weights to {out}: {e.strerror or e}") from None


def resolve_network_weights(name: str, weights: str | None = None, *, allow_download: bool = True) -> Path:
    """A local ``.safetensors`` file for network ``name`` (see the module docstring)."""
    from gencli import hub

    spec = NETWORKS[name]
    if weights:
        local = Path(weights).expanduser()
        if local.is_file() and local.suffix.lower() in (".pth", ".pt", ".bin", ".ckpt"):
            return _convert_cached(spec, local)
        path = hub.resolve(weights, allow_download=allow_download)
        if path.is_dir():
            candidate = path / spec.filename
            if not candidate.is_file():
                found = sorted(path.glob("*.safetensors"))
                if len(found) != 1:
                    raise WeightsNotFound(f"--weights {weights}: the folder {path} has no {spec.filename}")
                candidate = found[0]
            path = candidate
        if path.suffix.lower() in (".pth", ".pt"):
            return _convert_cached(spec, path)
        return path
    bundled = bundled_weights_dir() / spec.filename
    if bundled.is_file():
        return bundled
    cached = cache_dir() / "weights" / spec.filename
    if cached.is_file():
        return cached
    for pth_name in spec.pth_names:
        pth = torch_hub_dir() / pth_name
        if pth.is_file():
            return _convert_cached(spec, pth)
    ref = os.environ.get(spec.env) or spec.hub_ref
    try:
        return hub.resolve(ref, allow_download=allow_download)
    except WeightsNotFound as e:
        reason = str(e).split(";")[0]
        raise WeightsNotFound(
            f"no {spec.name} weights ({reason}); ways out: (1) `gencli pull {spec.name}` when online, "
            f"(2) `gencli convert {spec.name} {spec.pth_names[0]} -o {cached}`: {spec.pth_names[0]} is "
            f"{spec.origin} ({torch_hub_dir()}), or pass --weights PATH to a .pth/.safetensors, (3) {spec.hint}"
        ) from None
