"""The course reports' CNN: four blocks (conv 64x2, 128x2, 256x3, then dense 512-512-7)."""

from __future__ import annotations

from torch import nn

from ferlab.labels import IMAGE_SIZE
from ferlab.models import register_model
from ferlab.models.layers import FeaturesHead, conv_blocks, dense_classifier


@register_model("cnn", "seed CNN: conv 64x2-128x2-256x3 + dense 512-512, BN+ReLU, ~6.7M params")
def build_cnn(channels: tuple = ((64, 64), (128, 128), (256, 256, 256)), dense: tuple = (512, 512),
              conv_dropout: float = 0.25, dense_dropout: float = 0.5, activation: str = "relu") -> nn.Module:
    layers, width = conv_blocks(channels, activation, lambda: [nn.MaxPool2d(2), nn.Dropout(conv_dropout)])
    side = IMAGE_SIZE // 2 ** len(channels)  # 48 -> 24 -> 12 -> 6
    head = [nn.Flatten(), *dense_classifier(width * side * side, dense, dense_dropout, activation)]
    return FeaturesHead(nn.Sequential(*layers), nn.Sequential(*head))
