"""Pure functions that turn raw maps into pictures: ReLU, normalising, top-k masks, overlays."""

from __future__ import annotations

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F

OVERLAY_ALPHA = 0.45  # a map's weight where it is blended over a face (photos, video, the page)


def relu(maps: torch.Tensor) -> torch.Tensor:
    return maps.clamp(min=0)


def normalize(maps: torch.Tensor, signed: bool = False, percentile: float = 99.5) -> torch.Tensor:
    """Scale each (1, H, W) map by its ``percentile`` of |values| into [0, 1] ([-1, 1] if signed);
    a percentile rather than the maximum keeps one hot pixel from washing out the rest."""
    flat = maps.flatten(1)
    scale = torch.quantile(flat.abs(), percentile / 100, dim=1).clamp(min=1e-12)[:, None, None, None]
    scaled = maps / scale
    return scaled.clamp(-1, 1) if signed else scaled.clamp(0, 1)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def top_fraction_mask(maps: torch.Tensor, fraction: float) -> torch.Tensor:
    """(N, 1, H, W) bool: the ``fraction`` of pixels with the largest values in each map."""
    flat = maps.flatten(1)
    keep = max(1, round(fraction * flat.shape[1]))
    order = flat.argsort(dim=1, descending=True, stable=True)[:, :keep]  # exactly `keep`, ties by position
    return torch.zeros_like(flat, dtype=torch.bool).scatter_(1, order, True).reshape(maps.shape)


def masked_faces(faces: torch.Tensor, maps: torch.Tensor, fraction: float = 0.2) -> torch.Tensor:
    """(N, 48, 48) uint8 faces keeping only the top ``fraction`` most salient pixels (others black)."""
    mask = top_fraction_mask(maps, fraction)[:, 0]
    return torch.where(mask, faces, torch.zeros_like(faces))


def heat_rgb(map_: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """(H, W) in [0, 1] (or [-1, 1] with a diverging cmap) -> (H, W, 3) float in [0, 1]."""
    colormap = matplotlib.colormaps[cmap]
    values = (map_ + 1) / 2 if cmap in ("bwr", "RdBu_r", "seismic", "coolwarm") else map_
    return colormap(np.clip(values, 0, 1))[..., :3]


def overlay(face: np.ndarray, map_: np.ndarray, alpha: float = OVERLAY_ALPHA, cmap: str = "jet") -> np.ndarray:
    """(48, 48) uint8 face and (48, 48) map in [0, 1] -> (48, 48, 3) uint8 blend."""
    gray = np.repeat((face.astype(np.float64) / 255)[..., None], 3, axis=2)
    blend = (1 - alpha) * gray + alpha * heat_rgb(map_, cmap)
    return (np.clip(blend, 0, 1) * 255).round().astype(np.uint8)
