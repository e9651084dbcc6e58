"""Grad-CAM (Selvaraju et al. 2017) on a conv layer of ``model.features`` (default: the deepest),
upsampled bilinearly to the input size. Raw: no ReLU here.

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


def layer_activations_and_gradients(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                                    layer: str | int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, dScore/dA) of ``layer`` for each image's target class; both (N, C, h, w)."""
    front, back = split_at(model, layer)
    activations = front(images.detach()).detach().requires_grad_(True)
    scores = back(activations).gather(1, targets[:, None].to(activations.device)).sum()
    (gradients,) = torch.autograd.grad(scores, activations)
    return activations.detach(), gradients


def to_input_size(maps: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return F.interpolate(maps, size=tuple(images.shape[-2:]), mode="bilinear", align_corners=False)


@register_method("gradcam", "Grad-CAM")
def gradcam(model: nn.Module, images: torch.Tensor, target=None, layer: str | int | None = None) -> torch.Tensor:
    with evaluation_mode(model):
        targets = resolve_targets(model, images, target)
        activations, gradients = layer_activations_and_gradients(model, images, targets, layer)
        weights = gradients.mean(dim=(2, 3), keepdim=True)  # alpha_k: the gradient's spatial mean
        maps = (weights * activations).sum(1, keepdim=True)
    return to_input_size(maps, images).float().cpu()
