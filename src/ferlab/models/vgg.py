"""A VGG16-style stack adapted to 48x48 grayscale (batch norm, small dense head)."""

from __future__ import annotations

from torch import nn

from ferlab.models import register_model
from ferlab.models.layers import FeaturesHead, conv_blocks, dense_classifier

VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


@register_model("vgg", "VGG16-style: 13 conv (64..512) with BN, 5 pools (48 -> 1), dense 512-512")
def build_vgg(channels: tuple = VGG16, dense: tuple = (512, 512), dropout: float = 0.5,
              activation: str = "relu") -> nn.Module:
    layers, width = conv_blocks(channels, activation, lambda: [nn.MaxPool2d(2)])  # 48 -> 24 -> 12 -> 6 -> 3 -> 1
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), *dense_classifier(width, dense, dropout, activation)]
    return FeaturesHead(nn.Sequential(*layers), nn.Sequential(*head))
