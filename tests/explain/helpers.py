"""Tiny hand-weighted models whose explanations can be computed by hand."""

from __future__ import annotations

import torch
from torch import nn

from ferlab.models.layers import FeaturesHead


def identity_conv_model(head_weights: torch.Tensor) -> FeaturesHead:
    """features: one 3x3 conv with 2 channels, A_0 = x and A_1 = 2x (centre taps only);
    head: global average pool -> linear (2 -> 7, no bias) with ``head_weights`` (7, 2)."""
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    linear = nn.Linear(2, 7, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0
        conv.weight[1, 0, 1, 1] = 2.0
        linear.weight.copy_(head_weights)
    return FeaturesHead(nn.Sequential(conv), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear))


class SquaredProjection(nn.Module):
    """logit_c = (w_c . x)^2: the input gradient is 2 (w_c . x) w_c."""

    def __init__(self, weights: torch.Tensor):  # (7, 48*48)
        super().__init__()
        self.weights = nn.Parameter(weights.clone())

    def forward(self, x):
        return (x.flatten(1) @ self.weights.T) ** 2


class LeftHalf(nn.Module):
    """Class 0 is decided by the mean of the left half of the face only."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(8.0))

    def forward(self, x):
        left = x[..., :24].mean((1, 2, 3))
        return torch.stack([self.gain * left] + [torch.zeros_like(left)] * 6, dim=1)


def small_cnn(seed: int = 0) -> nn.Module:
    from ferlab.models import build_model

    torch.manual_seed(seed)
    return build_model("fastnet", widths=(8, 8, 16, 16)).eval()


def all_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())
