"""VGG-style stacks adapted to 48x48 grayscale (batch norm, global average pool, small dense head).

`vgg` is VGG16's 13 convolutions; `vgg8` is the 8-convolution net of the strongest from-scratch
FER2013 papers (Pramerdorfer & Kampel 2016; Khaireddin & Chen 2021): four stages of two 3x3
convolutions, 64..512 wide, the first at full resolution.
"""

from __future__ import annotations

from torch import nn

from ferlab.models import register_model
from ferlab.models.layers import FeaturesHead, conv_blocks, dense_classifier

VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
VGG8 = ((64, 64), (128, 128), (256, 256), (512, 512))


def vgg(channels: tuple, dense: tuple, dropout: float, activation: str) -> nn.Module:
    layers, width = conv_blocks(channels, activation, lambda: [nn.MaxPool2d(2)])  # each block halves the side
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), *dense_classifier(width, dense, dropout, activation)]
    return FeaturesHead(nn.Sequential(*layers), nn.Sequential(*head))


@register_model("vgg", "VGG16-style: 13 conv (64..512) with BN, 5 pools (48 -> 1), dense 512-512")
def build_vgg(channels: tuple = VGG16, dense: tuple = (512, 512), dropout: float = 0.5,
              activation: str = "relu") -> nn.Module:
    return vgg(channels, dense, dropout, activation)


@register_model("vgg8", "VGG-style: 8 conv (64x2, 128x2, 256x2, 512x2) with BN, 4 pools (48 -> 3), dense 1024")
def build_vgg8(channels: tuple = VGG8, dense: tuple = (1024,), dropout: float = 0.5,
               activation: str = "relu") -> nn.Module:
    return vgg(channels, dense, dropout, activation)
