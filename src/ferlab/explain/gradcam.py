"""Grad-CAM (Selvaraju et al. 2017) on a conv layer of ``model.features`` (default: the deepest),
through Captum's LayerGradCam, upsampled bilinearly to the input size. Raw: no ReLU here."""

from __future__ import annotations

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from ferlab.explain import register_method
from ferlab.explain.common import evaluation_mode, fresh_input, pick_layer, resolve_targets


@register_method("gradcam", "Grad-CAM")
def gradcam(model: nn.Module, images: torch.Tensor, target=None, layer: str | int | None = None) -> torch.Tensor:
    with evaluation_mode(model):
        targets = resolve_targets(model, images, target)
        _, module = pick_layer(model, layer)
        maps = LayerGradCam(model, module).attribute(fresh_input(images), target=targets.tolist(),
                                                     relu_attributions=False)
        maps = LayerAttribution.interpolate(maps, tuple(images.shape[-2:]), interpolate_mode="bilinear")
    return maps.detach().float().cpu()
