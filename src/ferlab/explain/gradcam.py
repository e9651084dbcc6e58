"""Grad-CAM (Selvaraju et al. 2017) on a conv layer of ``model.features`` (default: the deepest),
upsampled bilinearly to the input size (to the window a crop-trained model sees). Raw: no ReLU here.

Computed without hooks, by running the model in two parts (``split_at``): the activations of the
chosen layer are an ordinary tensor whose gradient autograd returns. That keeps concurrent
requests on one shared model independent (hooks on a shared model are not), and it gives the same
maps as Captum's LayerGradCam (tests/explain check that).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ferlab.explain import register_method
from ferlab.explain.common import evaluation_mode, resolve_targets, split_at
from ferlab.models.layers import input_crop


def layer_activations_and_gradients(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                                    layer: str | int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, dScore/dA) of ``layer`` for each image's target class; both (N, C, h, w)."""
    front, back = split_at(model, layer)
    activations = front(images.detach()).detach().requires_grad_(True)
    scores = back(activations).gather(1, targets[:, None].to(activations.device)).sum()
    (gradients,) = torch.autograd.grad(scores, activations)
    return activations.detach(), gradients


def to_input_size(maps: torch.Tensor, images: torch.Tensor, model: nn.Module, mode: str = "bilinear") -> torch.Tensor:
    """``maps`` upsampled (``mode``: bilinear or nearest) onto the pixels the model saw: the whole
    input, or for a model trained on crops its centre window, with zeros outside where the model
    never looks (stretching a 40-pixel window's map over 48 pixels would shift it by up to 4
    pixels at the edges)."""
    height, width = images.shape[-2:]
    crop = input_crop(model)
    top, left, seen_height, seen_width = crop.window(height, width) if crop else (0, 0, height, width)
    placed = maps.new_zeros(*maps.shape[:2], height, width)
    placed[..., top:top + seen_height, left:left + seen_width] = F.interpolate(
        maps, size=(seen_height, seen_width), mode=mode, align_corners=False if mode == "bilinear" else None)
    return placed


def layer_gradcam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: str | int | None) -> torch.Tensor:
    """Grad-CAM at the layer's own resolution, (N, 1, h, w): its activations weighted by their
    gradient's spatial mean (alpha_k) and summed over channels."""
    activations, gradients = layer_activations_and_gradients(model, images, targets, layer)
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    return (weights * activations).sum(1, keepdim=True)


@register_method("gradcam", "Grad-CAM")
def gradcam(model: nn.Module, images: torch.Tensor, target=None, layer: str | int | None = None) -> torch.Tensor:
    with evaluation_mode(model):
        maps = layer_gradcam(model, images, resolve_targets(model, images, target), layer)
    return to_input_size(maps, images, model).float().cpu()
