"""ResNets: the CIFAR-stem ResNet-18 / ResNet-50 of the OPTML protocol and torchvision's standard
ImageNet-stem ones (for audited outside checkpoints)."""
from __future__ import annotations

from torch import nn

from .registry import register_model


@register_model("resnet18", points=("layer1", "layer2", "layer3", "layer4"))
def resnet18_cifar(num_classes, in_channels, image_size, width=32):
    """CIFAR-stem ResNet-18 (OPTML protocol): 3x3 stride-1 stem, no max-pool."""
    from torchvision.models import resnet18
    m = resnet18(num_classes=num_classes)
    m.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    return m


@register_model("resnet50", points=("layer1", "layer2", "layer3", "layer4"))
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


@register_model("tv_resnet18", points=("layer1", "layer2", "layer3", "layer4"))
def tv_resnet18(num_classes, in_channels, image_size, width=32):
    """Standard torchvision ResNet-18 (ImageNet stem, no pretrained weights)."""
    from torchvision.models import resnet18
    return _imagenet_stem(resnet18(num_classes=num_classes), in_channels)


@register_model("tv_resnet50", points=("layer1", "layer2", "layer3", "layer4"))
def tv_resnet50(num_classes, in_channels, image_size, width=32):
    """Standard torchvision ResNet-50 (ImageNet stem, no pretrained weights)."""
    from torchvision.models import resnet50 as tv_resnet50_
    return _imagenet_stem(tv_resnet50_(num_classes=num_classes), in_channels)
