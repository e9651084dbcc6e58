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


def random_crop(images: torch.Tensor, side: int, generator: torch.Generator) -> torch.Tensor:
    """A square window of ``side`` pixels from each face at a uniformly random place (every
    position inside the face equally likely): (N, C, H, W) -> (N, C, side, side). One gather for
    the whole batch, no host-device synchronisation."""
    n, channels, height, width = images.shape
    if side >= height and side >= width:
        return images
    device = generator.device
    top = torch.randint(0, height - side + 1, (n,), generator=generator, device=device).to(images.device)
    left = torch.randint(0, width - side + 1, (n,), generator=generator, device=device).to(images.device)
    return crop_at(images, top, left, side)


def crop_at(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, side: int) -> torch.Tensor:
    """The ``side``-pixel square whose top-left corner is (``top[i]``, ``left[i]``) of each face."""
    n, channels, _, width = images.shape
    span = torch.arange(side, device=images.device)
    index = (top[:, None, None] + span[None, :, None]) * width + (left[:, None, None] + span[None, None, :])
    index = index.reshape(n, 1, side * side).expand(n, channels, side * side)
    return images.flatten(2).gather(2, index).reshape(n, channels, side, side)


def shrink(images: torch.Tensor, side: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, side, side), area-weighted (antialiased bilinear), so a shrunk face
    looks like a smaller photo rather than a subsampled one."""
    if side >= images.shape[-1]:
        return images
    return F.interpolate(images, size=(side, side), mode="bilinear", antialias=True, align_corners=False)


def random_boxes(n: int, height: int, width: int, area: torch.Tensor, ratio: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
    """(n, H, W) bool masks, one rectangle per face lying wholly inside it: ``area`` (n,) is the
    wanted fraction of the face, ``ratio`` (n,) its height/width; placed uniformly at random."""
    device = generator.device
    target = area * height * width
    h = (target * ratio).sqrt().round().clamp(1, height)
    w = (target / ratio).sqrt().round().clamp(1, width)
    top = (torch.rand(n, generator=generator, device=device) * (height - h + 1)).floor()
    left = (torch.rand(n, generator=generator, device=device) * (width - w + 1)).floor()
    rows = torch.arange(height, device=device)[None, :]
    cols = torch.arange(width, device=device)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])  # (n, H)
    inside_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # (n, W)
    return inside_rows[:, :, None] & inside_cols[:, None, :]


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
    boxes = random_boxes(n, height, width, uniform(*area), torch.exp(uniform(math.log(aspect[0]), math.log(aspect[1]))),
                         generator)
    mask = (boxes & chosen[:, None, None]).to(images.device)
    return images.masked_fill(mask[:, None], fill)


def mixup(images: torch.Tensor, partners: torch.Tensor, keep: torch.Tensor,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al. 2018): keep * face + (1 - keep) * partner, pixel by pixel."""
    weight = keep.to(images.device, images.dtype)[:, None, None, None]
    return weight * images + (1 - weight) * partners, keep


def cutmix(images: torch.Tensor, partners: torch.Tensor, keep: torch.Tensor,
           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix (Yun et al. 2019): a square of the partner, (1 - keep) of the face's area, pasted in;
    ``keep`` is then recomputed from the pixels actually kept (the box is rounded to whole pixels)."""
    n, _, height, width = images.shape
    boxes = random_boxes(n, height, width, 1 - keep, torch.ones_like(keep), generator) & (keep < 1)[:, None, None]
    kept = 1 - boxes.flatten(1).float().mean(1)
    return torch.where(boxes.to(images.device)[:, None], partners, images), kept


MIXERS = {"mixup": mixup, "cutmix": cutmix}  # one signature: (faces, partners, keep, generator) -> (mixed, keep)


def mix_batch(images: torch.Tensor, mode: str, probability: float, generator: torch.Generator,
              offset: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixup or CutMix over an (N, C, H, W) batch whose order is already random: each face is
    chosen with ``probability`` and mixed with its partner, ``offset`` places on in the batch (the
    views of one face sit side by side: with ``offset`` = views per face, the partner is another face), at a share
    uniform in [0, 1] (Beta(1, 1), the CutMix paper's default). Returns the mixed batch, each face's
    partner index and ``keep``, the weight of the face's own label (1 for faces left alone); the
    loss is keep * CE(label) + (1 - keep) * CE(partner's label). No host-device synchronisation."""
    n = images.shape[0]
    device = generator.device
    partner = torch.roll(torch.arange(n, device=images.device), -offset)
    chosen = torch.rand(n, generator=generator, device=device) < probability
    keep = torch.where(chosen, torch.rand(n, generator=generator, device=device), 1.0)
    mixed, keep = MIXERS[mode](images, images[partner], keep, generator)
    return mixed, partner, keep.to(images.device)
