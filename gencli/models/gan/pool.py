"""The history of generated images a discriminator also sees (Shrivastava et al. 2017), as the
official pytorch-CycleGAN-and-pix2pix ``ImagePool``."""

from __future__ import annotations

import torch
from torch import nn

from gencli.errors import UsageError


class ImagePool(nn.Module):
    """The history of generated images the discriminator also sees (Shrivastava et al. 2017).

    Until the pool is full each image is stored and returned; afterwards, with probability 1/2 a
    stored image is returned in its place (and replaced by it). The pool lives in buffers, so it
    is saved with the training state and a resumed run continues with the same history.
    """

    def __init__(self, size: int, shape: tuple[int, int, int]):
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(size, *shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images.detach()
        if tuple(images.shape[1:]) != tuple(self.images.shape[1:]):
            raise UsageError(f"training images are {tuple(images.shape[1:])} but this model's image pool holds "
                             f"{tuple(self.images.shape[1:])}: train at the config's image_size")
        out = []
        n = int(self.count)
        for img in images.detach():
            if n < self.size:
                self.images[n] = img
                n += 1
                out.append(img)
            elif float(torch.rand(())) > 0.5:
                i = int(torch.randint(self.size, ()))
                out.append(self.images[i].clone())
                self.images[i] = img
            else:
                out.append(img)
        self.count.fill_(n)
        return torch.stack(out)
