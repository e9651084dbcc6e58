"""HiResCAM (Draelos & Carin 2020): the element-wise gradient x activation of a conv layer, summed
over channels. Unlike Grad-CAM it stays faithful when the head flattens spatial features into
dense layers (as the seed ``cnn`` does)."""

from __future__ import annotations

import torch
from captum.attr import LayerAttribution, LayerGradientXActivation
from torch import nn

from ferlab.explain import register_method
from ferlab.explain.common import evaluation_mode, fresh_input, pick_layer, resolve_targets


@register_method("hirescam", "HiResCAM")
def hirescam(model: nn.Module, images: torch.Tensor, target=None, layer: str | int | None = None) -> torch.Tensor:
    with evaluation_mode(model):
        targets = resolve_targets(model, images, target)
        _, module = pick_layer(model, layer)
        maps = LayerGradientXActivation(model, module).attribute(fresh_input(images), target=targets.tolist())
        maps = LayerAttribution.interpolate(maps.sum(1, keepdim=True), tuple(images.shape[-2:]),
                                            interpolate_mode="bilinear")
    return maps.detach().float().cpu()
