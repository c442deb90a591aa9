"""The small CNN for small images (8x8 digits, 28x28 MNIST)."""
from __future__ import annotations

from torch import nn

from .registry import register_model


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


@register_model("small_cnn", points=("block1", "block2", "block3", "block4"))
def small_cnn(num_classes, in_channels, image_size, width=32):
    return SmallCNN(num_classes, in_channels, image_size, width)
