"""fastnet: a small residual network sized for speed-to-accuracy at 48x48.

A stem, then four stages of (conv -> max-pool -> residual pair of convs), in the spirit of the
fast CIFAR-10 training nets (airbench, ResNet-9): few layers, pooling early, wide late.
`fastnet-full` adds a residual pair at full resolution before the first pool, as the strongest
from-scratch FER2013 nets do (two convolutions at 48x48); it costs about twice the compute.
Two options make it cheaper on a CPU, where the 48x48 layers dominate the step: ``stem=False``
lets the first stage's convolution read the face itself, and ``pool_first=True`` pools each
stage's first convolution before its batch norm and activation (airbench's order), so those run
on a quarter of the pixels.
"""

from __future__ import annotations

from torch import nn

from ferlab.labels import NUM_CLASSES
from ferlab.models import register_model
from ferlab.models.layers import FeaturesHead, activation, conv_unit


class Residual(nn.Module):
    def __init__(self, channels: int, act: str):
        super().__init__()
        self.body = nn.Sequential(conv_unit(channels, channels, act), conv_unit(channels, channels, act))

    def forward(self, x):
        return x + self.body(x)


def pooled_unit(in_channels: int, out_channels: int, act: str, pool_first: bool) -> list[nn.Module]:
    """A stage's first convolution and its 2x max-pool."""
    if not pool_first:
        return [conv_unit(in_channels, out_channels, act), nn.MaxPool2d(2)]
    return [nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.MaxPool2d(2),
                          nn.BatchNorm2d(out_channels), activation(act))]


def fastnet(widths: tuple, dropout: float, act: str, full_resolution: bool, stem: bool = True,
            pool_first: bool = False) -> nn.Module:
    layers: list[nn.Module] = [conv_unit(1, widths[0], act)] if stem else []
    if full_resolution:
        layers.append(Residual(widths[0], act))  # 48x48: fine detail before any pooling
    in_channels = widths[0] if stem else 1
    for width in widths:
        layers += [*pooled_unit(in_channels, width, act, pool_first), Residual(width, act)]
        in_channels = width  # 48 -> 24 -> 12 -> 6 -> 3
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(in_channels, NUM_CLASSES))
    return FeaturesHead(nn.Sequential(*layers), head)


@register_model("fastnet", "small residual net (stem + 4 stages, 32..256 wide); stem=false pool_first=true: the cpu preset's leaner one")
def build_fastnet(widths: tuple = (32, 64, 128, 256), dropout: float = 0.3, activation: str = "relu",
                  stem: bool = True, pool_first: bool = False) -> nn.Module:
    return fastnet(widths, dropout, activation, full_resolution=False, stem=stem, pool_first=pool_first)


@register_model("fastnet-full", "fastnet with a residual pair at full 48x48 resolution before the first pool")
def build_fastnet_full(widths: tuple = (32, 64, 128, 256), dropout: float = 0.3, activation: str = "relu") -> nn.Module:
    return fastnet(widths, dropout, activation, full_resolution=True)
