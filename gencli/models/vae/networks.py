"""The convolutional encoder and decoder of the autoencoder family (conv 32 -> conv 64 -> dense
latent, mirrored with transposed convolutions)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ConvEncoder(nn.Module):
    """(N, C, S, S) -> (N, out_features): strided 4x4 convs (S/2 each), then two dense layers."""

    def __init__(self, channels: int, image_size: int, hidden: Sequence[int], dense: int, out_features: int):
        super().__init__()
        layers: list[nn.Module] = []
        c = channels
        for h in hidden:
            layers += [nn.Conv2d(c, h, 4, 2, 1), nn.SiLU()]
            c = h
        self.convs = nn.Sequential(*layers)
        side = image_size // 2 ** len(hidden)
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, dense), nn.SiLU(),
                                   nn.Linear(dense, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.convs(x))


class ConvDecoder(nn.Module):
    """(N, latent) -> (N, out_channels, S, S): the encoder mirrored with 4x4 transposed convs."""

    def __init__(self, latent: int, image_size: int, hidden: Sequence[int], dense: int, out_channels: int):
        super().__init__()
        hidden = list(hidden)[::-1]
        self.side = image_size // 2 ** len(hidden)
        self.c0 = hidden[0]
        self.dense = nn.Sequential(nn.Linear(latent, dense), nn.SiLU(),
                                   nn.Linear(dense, self.c0 * self.side * self.side), nn.SiLU())
        layers: list[nn.Module] = []
        for i, h in enumerate(hidden):
            nxt = hidden[i + 1] if i + 1 < len(hidden) else out_channels
            layers.append(nn.ConvTranspose2d(h, nxt, 4, 2, 1))
            if i + 1 < len(hidden):
                layers.append(nn.SiLU())
        self.convs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.dense(z).view(z.shape[0], self.c0, self.side, self.side)
        return self.convs(h)
