"""Architectures with named supervision points (feature taps), in a small registry.

Every model exposes `supervision_points` (module names in forward order; the last one is the
penultimate feature where the real head sits). `FeatureTaps` captures those modules' outputs with
forward hooks that are always removed, even when the forward pass raises.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable

import torch
from torch import nn

from ..config import SUPERVISION_POINTS

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    def deco(fn):
        _REGISTRY[name] = fn
        return fn
    return deco


def create_model(arch: str, num_classes: int, in_channels: int, image_size: int, width: int = 32) -> nn.Module:
    if arch not in _REGISTRY:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(_REGISTRY)}")
    model = _REGISTRY[arch](num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width)
    model.supervision_points = list(SUPERVISION_POINTS[arch])
    model.arch = arch
    names = dict(model.named_modules())
    missing = [p for p in model.supervision_points if p not in names]
    assert not missing, f"{arch} lacks supervision modules {missing}"
    return model


def point_channels(model: nn.Module, sample: torch.Tensor) -> list[int]:
    """Channel (or token) dimension at each supervision point, found with one forward pass."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FeatureTaps(model) as taps:
        model(sample[:2])
    model.train(was_training)
    return [pool(taps.features[p]).shape[1] for p in model.supervision_points]


def pool(t: torch.Tensor) -> torch.Tensor:
    """(n, C, H, W) -> global average pool (n, C); (n, T, D) tokens -> mean (n, D); (n, d) as is."""
    if t.dim() == 4:
        return t.mean(dim=(2, 3))
    if t.dim() == 3:
        return t.mean(dim=1)
    return t.flatten(1)


class FeatureTaps(AbstractContextManager):
    """`with FeatureTaps(model) as taps: model(x)` -> taps.features[name] for each supervision point.
    Hooks are removed on exit, whatever happens inside."""

    def __init__(self, model: nn.Module, names: list[str] | None = None, detach: bool = False):
        self.model = model
        self.names = list(names if names is not None else model.supervision_points)
        self.detach = detach
        self.features: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self):
        modules = dict(self.model.named_modules())
        for name in self.names:
            self._handles.append(modules[name].register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name):
        def fn(_module, _inp, out):
            self.features[name] = out.detach() if self.detach else out
        return fn

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        return False

    def ordered(self) -> list[torch.Tensor]:
        return [self.features[n] for n in self.names]


# -- architectures -----------------------------------------------------------------------------

def _conv_bn(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """Four conv blocks for small images (8x8 digits, 28x28 MNIST); GAP + linear head."""

    def __init__(self, num_classes, in_channels, image_size, width=32):
        super().__init__()
        w = width
        down = image_size >= 16  # 28x28 / 32x32 inputs get an extra stride-2 in block1
        self.block1 = _conv_bn(in_channels, w, 2 if down else 1)
        self.block2 = _conv_bn(w, 2 * w)
        self.block3 = _conv_bn(2 * w, 4 * w, 2)
        self.block4 = _conv_bn(4 * w, 4 * w)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return self.fc(x.mean(dim=(2, 3)))


@register_model("small_cnn")
def small_cnn(num_classes, in_channels, image_size, width=32):
    return SmallCNN(num_classes, in_channels, image_size, width)


@register_model("resnet18")
def resnet18_cifar(num_classes, in_channels, image_size, width=32):
    """CIFAR-stem ResNet-18 (OPTML protocol): 3x3 stride-1 stem, no max-pool."""
    from torchvision.models import resnet18
    m = resnet18(num_classes=num_classes)
    m.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    return m


@register_model("resnet50")
def resnet50(num_classes, in_channels, image_size, width=32):
    """torchvision ResNet-50; small inputs (<= 64 px) get the CIFAR stem."""
    from torchvision.models import resnet50 as tv_resnet50
    m = tv_resnet50(num_classes=num_classes)
    if image_size <= 64 or in_channels != 3:
        m.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
    return m


def _imagenet_stem(m: nn.Module, in_channels: int) -> nn.Module:
    """torchvision's own 7x7 stride-2 stem (+ max-pool); only the input channels adapt, so the key
    names and every other shape stay those of torchvision's checkpoints."""
    if in_channels != 3:
        m.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    return m


@register_model("tv_resnet18")
def tv_resnet18(num_classes, in_channels, image_size, width=32):
    """Standard torchvision ResNet-18 (ImageNet stem, no pretrained weights)."""
    from torchvision.models import resnet18
    return _imagenet_stem(resnet18(num_classes=num_classes), in_channels)


@register_model("tv_resnet50")
def tv_resnet50(num_classes, in_channels, image_size, width=32):
    """Standard torchvision ResNet-50 (ImageNet stem, no pretrained weights)."""
    from torchvision.models import resnet50 as tv_resnet50_
    return _imagenet_stem(tv_resnet50_(num_classes=num_classes), in_channels)


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


@register_model("vit_tiny")
def vit_tiny(num_classes, in_channels, image_size, width=32):
    return ViTTiny(num_classes, in_channels, image_size)
