"""Read diffusers ``UNet2DModel`` folders and DDPM/DDIM pipelines as gencli ``ddpm`` models.

Accepted layouts (``path`` is the folder; a file inside it works too):

- a UNet folder: ``config.json`` + ``diffusion_pytorch_model.safetensors`` (or a sharded
  ``diffusion_pytorch_model.safetensors.index.json``, or ``diffusion_pytorch_model.bin``, read
  with :func:`gencli.convert.torchfile.load_torch_file` only: no pickled code runs);
- a pipeline folder: ``model_index.json`` with ``unet/`` and ``scheduler/`` sub-folders (what
  ``DDPMPipeline.save_pretrained`` writes), or the older flat layout of the google/ddpm-*
  repositories (``model_index.json``, ``config.json`` and ``scheduler_config.json`` side by side).

The scheduler config is ``scheduler_config.json`` in the UNet folder, else ``scheduler/`` inside
it, else ``scheduler/`` beside it (a pipeline's ``unet/`` sub-folder); without one, DDPM
defaults are assumed with a warning.

The result is a :class:`gencli.models.diffusion.ddpm.DiffusionModel` config::

    {"unet": <config.json as is>, "scheduler": {NoiseSchedule fields}, "image_size": sample_size,
     "channels": in_channels, "num_classes": num_class_embeds or None, "null_class": None,
     "sampling": {"sampler": "ddpm", "steps": 1000, ...}}

and the UNet tensors keyed ``unet.<diffusers key>`` (legacy ``query/key/value/proj_attn``
attention names renamed). ``config.json`` is passed through unchanged: a *missing*
``attention_head_dim`` means diffusers' default 8, ``null`` means one head per block.

Everything gencli would run differently from diffusers is refused with a one-line
:class:`InputError` instead of giving silently wrong images.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gencli.errors import GencliError, InputError

__all__ = ["load_diffusers", "read_diffusers", "convert", "find_files", "is_diffusers_folder",
           "DDPM_DEFAULT_SCHEDULER"]

WEIGHTS = "diffusion_pytorch_model.safetensors"
WEIGHTS_INDEX = "diffusion_pytorch_model.safetensors.index.json"
WEIGHTS_BIN = "diffusion_pytorch_model.bin"

#: What a missing scheduler config means (diffusers' DDPMScheduler defaults).
DDPM_DEFAULT_SCHEDULER: dict[str, Any] = {
    "_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_schedule": "linear",
    "beta_start": 1e-4, "beta_end": 0.02, "clip_sample": True, "variance_type": "fixed_small",
    "prediction_type": "epsilon",
}
# scheduler class -> (sampler, steps) used when `gencli sample` is given no --sampler/--steps
_SAMPLING = {"DDPMScheduler": ("ddpm", 1000), "DDIMScheduler": ("ddim", 50)}
# Noise-schedule based schedulers whose models we can sample with DDPM/DDIM (same betas).
_BETA_SCHEDULERS = {"PNDMScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler",
                    "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
                    "LMSDiscreteScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler",
                    "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "DDPMParallelScheduler",
                    "DDIMParallelScheduler", "LCMScheduler", "TCDScheduler"}
_BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}
_VARIANCE = {"fixed_small": "fixed_small", "fixed_small_log": "fixed_small", "fixed_large": "fixed_large",
             "fixed_large_log": "fixed_large"}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path} is not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a JSON object")
    return data


# --------------------------------------------------------------------------------------------
# Finding the files
# --------------------------------------------------------------------------------------------


def find_files(path: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """(UNet folder, scheduler_config.json or None) for a UNet folder, pipeline folder, or a file in one."""
    path = Path(path).expanduser()
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        raise InputError(f"{path}: no such diffusers folder")
    index = path / "model_index.json"
    if (path / "unet" / "config.json").is_file():
        unet = path / "unet"
    elif (path / "config.json").is_file():
        unet = path
    elif index.is_file():
        raise InputError(f"{path}: the pipeline in model_index.json has no unet/config.json "
                         f"(only UNet2DModel pipelines such as DDPMPipeline/DDIMPipeline are supported)")
    else:
        raise InputError(f"{path} is not a diffusers folder (no config.json, unet/config.json or "
                         f"model_index.json)")
    if index.is_file():
        entry = _read_json(index).get("unet")
        if isinstance(entry, list) and len(entry) == 2 and entry[1] not in (None, "UNet2DModel"):
            raise InputError(f"{path}: the pipeline's unet is a {entry[1]}; gencli supports UNet2DModel "
                             f"pipelines only (DDPMPipeline, DDIMPipeline)")
    candidates = [unet / "scheduler_config.json", path / "scheduler" / "scheduler_config.json"]
    if unet == path and (path.parent / "model_index.json").is_file():  # a pipeline's unet/: scheduler/ beside it
        candidates.append(path.parent / "scheduler" / "scheduler_config.json")
    for candidate in candidates:
        if candidate.is_file():
            return unet, candidate
    return unet, None


def _load_weights(unet: Path) -> dict[str, Any]:
    from gencli.checkpoints import load_checkpoint
    from gencli.convert.torchfile import load_torch_file

    if (unet / WEIGHTS).is_file():
        return dict(load_checkpoint(unet / WEIGHTS).tensors)
    if (unet / WEIGHTS_INDEX).is_file():
        weight_map = _read_json(unet / WEIGHTS_INDEX).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise InputError(f"{unet / WEIGHTS_INDEX} has no weight_map")
        tensors: dict[str, Any] = {}
        for shard in sorted(set(map(str, weight_map.values()))):
            shard_path = unet / shard
            if not shard_path.is_file():
                raise InputError(f"{unet}: shard {shard} listed in {WEIGHTS_INDEX} is missing")
            tensors.update(load_checkpoint(shard_path).tensors)
        return tensors
    if (unet / WEIGHTS_BIN).is_file():
        return load_torch_file(unet / WEIGHTS_BIN)
    present = sorted(p.name for p in unet.glob("diffusion_pytorch_model*"))
    if present:
        hint = f"found only {', '.join(present)}; variants are not picked automatically, rename the one to use"
    else:
        hint = "Hub snapshots fetch *.safetensors only: for a .bin-only repo download the .bin next to config.json"
    raise InputError(f"{unet}: no {WEIGHTS} or {WEIGHTS_BIN} ({hint})")


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


def _unet_config(raw: dict[str, Any], where: Path) -> dict[str, Any]:
    """Check a UNet2DModel config.json against what gencli's UNet2DModel computes identically."""
    from gencli.models.diffusion.unet import normalize_config

    name = raw.get("_class_name", "UNet2DModel")
    if name != "UNet2DModel":
        raise InputError(f"{where}: a {name} is not supported; gencli converts diffusers UNet2DModel "
                         f"(unconditional or class-conditional pixel-space DDPM/DDIM models)")
    try:
        cfg = normalize_config(raw)  # block types, embeddings... it cannot build
    except InputError as e:
        raise InputError(f"{where}: {e}") from None
    problems = []
    if raw.get("mid_block_type", "UNetMidBlock2D") != "UNetMidBlock2D":
        problems.append(f"mid_block_type={raw.get('mid_block_type')!r}")
    boc = cfg["block_out_channels"]
    if raw.get("time_embedding_dim") not in (None, boc[0] * 4):
        problems.append(f"time_embedding_dim={raw['time_embedding_dim']}")
    shift = cfg["resnet_time_scale_shift"]
    if shift not in ("default", "scale_shift"):
        problems.append(f"resnet_time_scale_shift={shift!r}")
    groups, attn_groups = cfg["norm_num_groups"], cfg["attn_norm_num_groups"]
    if not isinstance(groups, int):
        problems.append(f"norm_num_groups={groups!r}")
    if attn_groups is not None and attn_groups != groups:
        # diffusers applies attn_norm_num_groups to the mid-block attention only
        problems.append(f"attn_norm_num_groups={attn_groups} != norm_num_groups")
    if shift == "scale_shift" and attn_groups is None:
        problems.append("scale_shift resnets with a mid-block attention without group norm")
    if not cfg["add_attention"]:
        problems.append("add_attention=false")  # gencli's mid block then skips its second resnet
    if cfg["class_embed_type"] is not None:
        problems.append(f"class_embed_type={cfg['class_embed_type']!r}")
    head = cfg["attention_head_dim"]
    if head is not None:
        attn_channels = [boc[i] for i, t in enumerate(cfg["down_block_types"]) if t.startswith("Attn")]
        attn_channels += [list(reversed(boc))[i] for i, t in enumerate(cfg["up_block_types"]) if t.startswith("Attn")]
        attn_channels.append(boc[-1])
        bad = [c for c in attn_channels if c % head]
        if bad:
            problems.append(f"attention_head_dim={head} does not divide {bad[0]} channels")
    if cfg["out_channels"] != cfg["in_channels"]:
        problems.append(f"out_channels={cfg['out_channels']} != in_channels={cfg['in_channels']} "
                        f"(learned variance)")
    if problems:
        raise InputError(f"{where}: unsupported UNet2DModel config: {', '.join(problems)}")
    return raw


def _image_size(raw: dict[str, Any], where: Path) -> int:
    size = raw.get("sample_size")
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise InputError(f"{where}: sample_size {size!r} is not supported (gencli needs square images "
                         f"with a known side)")
    return size


def scheduler_fields(sched: dict[str, Any], where: Path | str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(NoiseSchedule fields, sampling defaults) from a diffusers scheduler config."""
    name = sched.get("_class_name", "DDPMScheduler")
    if name not in _SAMPLING and name not in _BETA_SCHEDULERS:
        raise InputError(f"{where}: scheduler {name} is not supported (gencli samples DDPM-type models "
                         f"with DDPM or DDIM)")
    problems = []
    if sched.get("trained_betas") is not None:
        problems.append("trained_betas")
    beta_schedule = sched.get("beta_schedule", "linear")
    if beta_schedule not in _BETA_SCHEDULES:
        problems.append(f"beta_schedule={beta_schedule!r}")
    variance = sched.get("variance_type") or "fixed_small"
    if variance not in _VARIANCE:
        problems.append(f"variance_type={variance!r}")
    if sched.get("rescale_betas_zero_snr"):
        problems.append("rescale_betas_zero_snr")
    prediction = sched.get("prediction_type", "epsilon")
    if prediction not in ("epsilon", "v_prediction", "sample"):
        problems.append(f"prediction_type={prediction!r}")
    spacing = sched.get("timestep_spacing") or "leading"
    if spacing not in ("leading", "trailing", "linspace"):
        problems.append(f"timestep_spacing={spacing!r}")
    if problems:
        raise InputError(f"{where}: unsupported {name} config: {', '.join(problems)}")
    if sched.get("thresholding"):
        warnings.warn(f"{where}: dynamic thresholding is not implemented; gencli clips x0 to "
                      f"+-{sched.get('clip_sample_range', 1.0)} instead", stacklevel=3)
    if sched.get("set_alpha_to_one") is False:
        warnings.warn(f"{where}: set_alpha_to_one=false is not implemented; the last DDIM step goes to "
                      f"alpha_bar=1", stacklevel=3)
    fields = {
        "num_train_timesteps": int(sched.get("num_train_timesteps", 1000)),
        "beta_schedule": _BETA_SCHEDULES[beta_schedule],
        "beta_start": float(sched.get("beta_start", 1e-4)),
        "beta_end": float(sched.get("beta_end", 0.02)),
        "prediction_type": prediction,
        "variance_type": _VARIANCE[variance],
        "clip_sample": bool(sched.get("clip_sample", True)),
        "clip_sample_range": float(sched.get("clip_sample_range", 1.0)),
        "steps_offset": int(sched.get("steps_offset", 0)),
    }
    if name in _SAMPLING:
        sampler, steps = _SAMPLING[name]
    else:
        warnings.warn(f"{where}: {name} is not implemented; sampling with DDIM (50 steps) by default",
                      stacklevel=3)
        sampler, steps = "ddim", 50
    sampling = {"sampler": sampler, "steps": min(steps, fields["num_train_timesteps"]),
                "spacing": spacing, "eta": 0.0, "guidance": 1.0}
    return fields, sampling


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _check_tensors(cfg: dict[str, Any], tensors: Mapping[str, Any], where: Path) -> None:
    """Names and shapes against the network the config describes (built on the meta device: free)."""
    import torch

    from gencli.models.diffusion.unet import UNet2DModel

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in UNet2DModel(cfg).state_dict().items()}
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    wrong = [k for k in expected if k in tensors and tuple(tensors[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        if wrong:
            k = wrong[0]
            example = f"{k} has shape {tuple(tensors[k].shape)}, the config needs {expected[k]}"
        elif missing:
            example = f"missing {missing[0]}"
        else:
            example = f"unexpected {unexpected[0]}"
        raise InputError(f"{where}: the weights do not fit the UNet in config.json ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected, {len(wrong)} wrongly shaped tensors; e.g. {example})")
    bad = [k for k, v in tensors.items() if not v.is_floating_point()]
    if bad:
        raise InputError(f"{where}: tensor {bad[0]} is not floating point ({tensors[bad[0]].dtype})")


def load_diffusers(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(DiffusionModel config, {"unet.<key>": tensor}, metadata) of a diffusers UNet/pipeline folder.

    Raises :class:`InputError` (one line) for a folder that is not a supported diffusers model.
    """
    from gencli.models.diffusion.unet import normalize_config, rename_legacy_keys

    unet_dir, sched_path = find_files(path)
    raw = _read_json(unet_dir / "config.json")
    unet_cfg = _unet_config(raw, unet_dir / "config.json")
    image_size = _image_size(raw, unet_dir / "config.json")
    if sched_path is None:
        warnings.warn(f"{unet_dir}: no scheduler_config.json; assuming DDPM defaults (linear betas "
                      f"1e-4..0.02, 1000 steps, clip_sample, fixed_small variance)", stacklevel=2)
        sched = dict(DDPM_DEFAULT_SCHEDULER)
        where: Path | str = unet_dir
    else:
        sched = _read_json(sched_path)
        where = sched_path
    schedule, sampling = scheduler_fields(sched, where)

    weights = rename_legacy_keys(_load_weights(unet_dir))
    _check_tensors(normalize_config(unet_cfg), weights, unet_dir)
    channels = int(raw.get("in_channels", 3))
    num_classes = raw.get("num_class_embeds")
    config = {
        "unet": dict(unet_cfg),
        "scheduler": schedule,
        "image_size": image_size,
        "channels": channels,
        "num_classes": int(num_classes) if num_classes else None,
        "null_class": None,  # no classifier-free-guidance token is known for diffusers models
        "sampling": sampling,
    }
    tensors = {f"unet.{k}": v for k, v in weights.items()}
    metadata = {"source_format": "diffusers", "dataset": "", "image_size": image_size, "channels": channels}
    return config, tensors, metadata


def read_diffusers(path: str | os.PathLike[str], family: str = "ddpm"
                   ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The ``diffusers`` entry of :mod:`gencli.formats`: :func:`load_diffusers` (``family`` is ddpm's)."""
    return load_diffusers(path)


def is_diffusers_folder(path: str | os.PathLike[str]) -> bool:
    """A folder with ``config.json`` or ``unet/config.json`` (what ``--weights FOLDER`` is read as)."""
    path = Path(path)
    return path.is_dir() and ((path / "config.json").exists() or (path / "unet" / "config.json").exists())


def convert(src: str, out: str, *, force: bool = False) -> Path:
    """Convert a diffusers UNet/pipeline (a local folder or any weights reference) to one gencli file.

    ``src``: a folder, or anything :func:`gencli.hub.resolve` accepts (``org/repo[@rev]``,
    ``hf://org/repo/unet/``). The weights are checked by loading them strictly into the gencli
    network before ``out`` is written (atomically; an existing ``out`` needs ``force``).
    """
    import torch

    from gencli import hub
    from gencli.checkpoints import save_checkpoint
    from gencli.models.diffusion.ddpm import DiffusionModel

    local = Path(src).expanduser()
    path = local if local.exists() else hub.resolve(src)
    config, tensors, meta = load_diffusers(path)
    try:  # the checkpoint must load strictly into the gencli model (built on the meta device: free)
        with torch.device("meta"):
            model = DiffusionModel(config)
        model.load_state_dict(tensors, strict=True, assign=True)
    except GencliError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure here means an unusable conversion
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: the converted weights do not load into gencli's ddpm ({first})") from None
    metadata = {"family": "ddpm", "config": config, "source": str(src), **meta,
                "notes": f"converted from a diffusers UNet2DModel ({path})"}
    return save_checkpoint(out, tensors, metadata, force=force)
