"""Blocks shared by UNets, VAEs and GANs, with diffusers' module and parameter names so diffusers
checkpoints load as they are. Each block has a plain ``forward`` and, where the inference fast
path (:mod:`gencli.kernels.fast_path`) has something quicker, a ``_forward_fast(state, ...)``."""

from gencli.models.layers.attention import Attention, rename_legacy_keys
from gencli.models.layers.blocks import MidBlock, UNetBlock2D
from gencli.models.layers.embeddings import TimestepEmbedding, timestep_embedding
from gencli.models.layers.resnet import ResnetBlock2D
from gencli.models.layers.sampling import Downsample2D, Upsample2D

__all__ = ["Attention", "Downsample2D", "MidBlock", "ResnetBlock2D", "TimestepEmbedding", "UNetBlock2D",
           "Upsample2D", "rename_legacy_keys", "timestep_embedding"]
