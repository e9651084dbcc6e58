"""A VGG16-style stack adapted to 48x48 grayscale (batch norm, small dense head)."""

from __future__ import annotations

from torch import nn

from ferlab.labels import NUM_CLASSES
from ferlab.models import register_model
from ferlab.models.layers import FeaturesHead, conv_unit, dense_unit

VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


@register_model("vgg", "VGG16-style: 13 conv (64..512) with BN, 5 pools (48 -> 1), dense 512-512")
def build_vgg(channels: tuple = VGG16, dense: tuple = (512, 512), dropout: float = 0.5,
              activation: str = "relu") -> nn.Module:
    layers: list[nn.Module] = []
    in_channels = 1
    for block in channels:
        for width in block:
            layers.append(conv_unit(in_channels, width, activation))
            in_channels = width
        layers.append(nn.MaxPool2d(2))  # five pools: 48 -> 24 -> 12 -> 6 -> 3 -> 1
    head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    in_features = in_channels
    for width in dense:
        head.append(dense_unit(in_features, width, dropout, activation))
        in_features = width
    head.append(nn.Linear(in_features, NUM_CLASSES))
    return FeaturesHead(nn.Sequential(*layers), nn.Sequential(*head))
