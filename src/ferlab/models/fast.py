"""fastnet: a small residual network sized for speed-to-accuracy at 48x48.

A stem, then four stages of (conv -> max-pool -> residual pair of convs), in the spirit of the
fast CIFAR-10 training nets (airbench, ResNet-9): few layers, pooling early, wide late.
`fastnet-full` adds a residual pair at full resolution before the first pool, as the strongest
from-scratch FER2013 nets do (two convolutions at 48x48); it costs about twice the compute.
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


def fastnet(widths: tuple, dropout: float, activation: str, full_resolution: bool) -> nn.Module:
    layers: list[nn.Module] = [conv_unit(1, widths[0], activation)]
    if full_resolution:
        layers.append(Residual(widths[0], activation))  # 48x48: fine detail before any pooling
    in_channels = widths[0]
    for width in widths:
        layers += [conv_unit(in_channels, width, activation), nn.MaxPool2d(2), Residual(width, activation)]
        in_channels = width  # 48 -> 24 -> 12 -> 6 -> 3
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(in_channels, NUM_CLASSES))
    return FeaturesHead(nn.Sequential(*layers), head)


@register_model("fastnet", "small residual net (stem + 4 stages, 32..256 wide), the fast default")
def build_fastnet(widths: tuple = (32, 64, 128, 256), dropout: float = 0.3, activation: str = "relu") -> nn.Module:
    return fastnet(widths, dropout, activation, full_resolution=False)


@register_model("fastnet-full", "fastnet with a residual pair at full 48x48 resolution before the first pool")
def build_fastnet_full(widths: tuple = (32, 64, 128, 256), dropout: float = 0.3, activation: str = "relu") -> nn.Module:
    return fastnet(widths, dropout, activation, full_resolution=True)
