"""The course reports' CNN: four blocks (conv 64x2, 128x2, 256x3, then dense 512-512-7)."""

from __future__ import annotations

from torch import nn

from ferlab.labels import IMAGE_SIZE, NUM_CLASSES
from ferlab.models import register_model
from ferlab.models.layers import FeaturesHead, conv_unit, dense_unit


@register_model("cnn", "seed CNN: conv 64x2-128x2-256x3 + dense 512-512, BN+ReLU, ~6.7M params")
def build_cnn(channels: tuple = ((64, 64), (128, 128), (256, 256, 256)), dense: tuple = (512, 512),
              conv_dropout: float = 0.25, dense_dropout: float = 0.5, activation: str = "relu") -> nn.Module:
    layers: list[nn.Module] = []
    in_channels = 1
    for block in channels:
        for width in block:
            layers.append(conv_unit(in_channels, width, activation))
            in_channels = width
        layers += [nn.MaxPool2d(2), nn.Dropout(conv_dropout)]  # 48 -> 24 -> 12 -> 6
    side = IMAGE_SIZE // 2 ** len(channels)
    head: list[nn.Module] = [nn.Flatten()]
    in_features = in_channels * side * side
    for width in dense:
        head.append(dense_unit(in_features, width, dense_dropout, activation))
        in_features = width
    head.append(nn.Linear(in_features, NUM_CLASSES))
    return FeaturesHead(nn.Sequential(*layers), nn.Sequential(*head))
