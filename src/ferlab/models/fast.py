"""fastnet: a small residual network sized for speed-to-accuracy at 48x48.

A stem, then four stages of (conv -> max-pool -> residual pair of convs), in the spirit of the
fast CIFAR-10 training nets (airbench, ResNet-9): few layers, pooling early, wide late.
"""

from __future__ import annotations

from torch import nn

from ferlab.labels import NUM_CLASSES
from ferlab.models import register_model
from ferlab.models.layers import FeaturesHead, conv_unit


class Residual(nn.Module):
    def __init__(self, channels: int, act: str):
        super().__init__()
        self.body = nn.Sequential(conv_unit(channels, channels, act), conv_unit(channels, channels, act))

    def forward(self, x):
        return x + self.body(x)


@register_model("fastnet", "small residual net (stem + 4 stages, 32..256 wide), the fast default")
def build_fastnet(widths: tuple = (32, 64, 128, 256), dropout: float = 0.3, activation: str = "relu") -> nn.Module:
    layers: list[nn.Module] = [conv_unit(1, widths[0], activation)]
    in_channels = widths[0]
    for width in widths:
        layers += [conv_unit(in_channels, width, activation), nn.MaxPool2d(2), Residual(width, activation)]
        in_channels = width  # 48 -> 24 -> 12 -> 6 -> 3
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(in_channels, NUM_CLASSES))
    return FeaturesHead(nn.Sequential(*layers), head)
