"""HiResCAM (Draelos & Carin 2020): the element-wise gradient x activation of a conv layer, summed
over channels. Unlike Grad-CAM it stays faithful when the head flattens spatial features into
dense layers (as the seed ``cnn`` does); with a global-average-pool head the two coincide up to a
constant factor. Hook-free, like Grad-CAM."""

from __future__ import annotations

import torch
from torch import nn

from ferlab.explain import register_method
from ferlab.explain.common import evaluation_mode, resolve_targets
from ferlab.explain.gradcam import layer_activations_and_gradients, to_input_size


@register_method("hirescam", "HiResCAM")
def hirescam(model: nn.Module, images: torch.Tensor, target=None, layer: str | int | None = None) -> torch.Tensor:
    with evaluation_mode(model):
        targets = resolve_targets(model, images, target)
        activations, gradients = layer_activations_and_gradients(model, images, targets, layer)
        maps = (gradients * activations).sum(1, keepdim=True)
    return to_input_size(maps, images, model).float().cpu()
