"""Batched augmentation as pure functions of (images, generator): one affine warp per face
(rotation, shear, zoom, shift and horizontal flip composed into a single matrix), applied to the
whole batch at once with ``grid_sample``. Runs where the images are, CPU or GPU."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentPolicy:
    flip: bool = True    # random horizontal flip
    rotate: float = 20.0  # degrees, uniform in [-rotate, rotate]
    shift: float = 0.2    # fraction of the side, each axis
    shear: float = 10.0   # degrees
    zoom: float = 0.2     # scale uniform in [1 - zoom, 1 + zoom]

    @property
    def is_identity(self) -> bool:
        return not self.flip and self.rotate == self.shift == self.shear == self.zoom == 0


def random_affine(n: int, policy: AugmentPolicy, generator: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) matrices for ``F.affine_grid`` mapping output to input coordinates in [-1, 1]."""
    device = generator.device  # draw where the generator lives: no host-device copy per batch on a GPU

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator, dtype=torch.float64, device=device) * 2 - 1) * limit

    angle = uniform(math.radians(policy.rotate))
    shear = uniform(math.radians(policy.shear))
    scale = 1 + uniform(policy.zoom)
    shift = torch.stack([uniform(2 * policy.shift), uniform(2 * policy.shift)], dim=1)  # [-1,1] spans 2
    flip = torch.ones(n, dtype=torch.float64, device=device)
    if policy.flip:
        flip = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -1.0, 1.0).double()
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Sampling grid = R(angle) @ Shear @ (1/scale) @ Flip, then shift: zoom in (scale > 1) samples
    # a smaller input region.
    a = torch.stack([torch.stack([cos, -sin + cos * torch.tan(shear)], -1),
                     torch.stack([sin, cos + sin * torch.tan(shear)], -1)], dim=1)  # (n, 2, 2)
    a = a / scale[:, None, None]
    a[:, :, 0] *= flip[:, None]
    return torch.cat([a, shift[:, :, None]], dim=2).float()


def augment_batch(images: torch.Tensor, policy: AugmentPolicy, generator: torch.Generator) -> torch.Tensor:
    """(N, 1, H, W) float -> same shape, warped; values stay within the input's range (bilinear
    interpolation, borders repeat the edge pixels as Keras' fill_mode='nearest' does)."""
    if policy.is_identity:
        return images
    theta = random_affine(images.shape[0], policy, generator).to(images.device)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def random_erase(images: torch.Tensor, probability: float, generator: torch.Generator,
                 area: tuple[float, float] = (0.02, 0.25), aspect: tuple[float, float] = (0.3, 3.3),
                 fill: float = 0.0) -> torch.Tensor:
    """Random erasing (Zhong et al. 2017), batched: with ``probability``, one rectangle per face of
    ``area`` (fraction of the face) and ``aspect`` (height/width, log-uniform) is set to ``fill``
    (0 = the training mean once standardised). (N, C, H, W) -> same shape."""
    if probability <= 0:
        return images
    n, _, height, width = images.shape
    device = generator.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator, device=device)

    chosen = torch.rand(n, generator=generator, device=device) < probability
    target = uniform(*area) * height * width
    ratio = torch.exp(uniform(math.log(aspect[0]), math.log(aspect[1])))
    h = (target * ratio).sqrt().round().clamp(1, height)
    w = (target / ratio).sqrt().round().clamp(1, width)
    top = (uniform(0.0, 1.0) * (height - h + 1)).floor()
    left = (uniform(0.0, 1.0) * (width - w + 1)).floor()
    rows = torch.arange(height, device=device)[None, :]
    cols = torch.arange(width, device=device)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])  # (n, H)
    inside_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # (n, W)
    mask = (inside_rows[:, :, None] & inside_cols[:, None, :] & chosen[:, None, None]).to(images.device)
    return images.masked_fill(mask[:, None], fill)
