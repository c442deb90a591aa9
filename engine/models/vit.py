"""A small vision transformer for 32x32 inputs."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


class ViTTiny(nn.Module):
    """A small vision transformer for 32x32 inputs: patch 4, dim 192, depth 6, 3 heads, mean pool."""

    def __init__(self, num_classes, in_channels, image_size, patch=4, dim=192, depth=6, heads=3):
        super().__init__()
        patch = patch if image_size % patch == 0 and image_size >= 4 * patch else 2
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, patch)
        n = (image_size // patch) ** 2
        self.pos = nn.Parameter(torch.zeros(1, n, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x).mean(dim=1))


@register_model("vit_tiny", points=("blocks.1", "blocks.3", "blocks.5", "norm"))
def vit_tiny(num_classes, in_channels, image_size, width=32):
    return ViTTiny(num_classes, in_channels, image_size)
