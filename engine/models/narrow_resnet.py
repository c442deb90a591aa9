"""A narrow, deeper residual network for 28x28 images on a CPU: four stages of one basic block each
(two 3x3 convolutions and a skip), widths w/2, w, 2w, 4w (w = model.width, 16-32-64-128 at the default
32), stride 2 from the second stage on. Twice the small CNN's depth (nine convolutions) at about its
cost per image; built to ask whether a deeper model's inner layers become class-specific on real
data (README: where superficial forgetting appears)."""
from __future__ import annotations

from torch import nn

from .registry import register_model


class _Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.skip(x))


class NarrowResNet(nn.Module):
    def __init__(self, num_classes, in_channels, width=32):
        super().__init__()
        w = max(width // 2, 4)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        self.layer1 = _Block(w, w, 1)
        self.layer2 = _Block(w, 2 * w, 2)
        self.layer3 = _Block(2 * w, 4 * w, 2)
        self.layer4 = _Block(4 * w, 8 * w, 2)
        self.fc = nn.Linear(8 * w, num_classes)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(x.mean(dim=(2, 3)))


@register_model("narrow_resnet", points=("layer1", "layer2", "layer3", "layer4"))
def narrow_resnet(num_classes, in_channels, image_size, width=32):
    return NarrowResNet(num_classes, in_channels, width)
