"""Vanilla gradient saliency (Simonyan et al. 2014): |d score_c / d x|, max over channels."""

from __future__ import annotations

import torch
from torch import nn

from ferlab.explain import register_method
from ferlab.explain.common import evaluation_mode, fresh_input, resolve_targets


@register_method("saliency", "Saliency (|gradient|)", display="fine")
def saliency(model: nn.Module, images: torch.Tensor, target=None) -> torch.Tensor:
    from captum.attr import Saliency  # here, not at import: see ferlab.explain

    with evaluation_mode(model):
        targets = resolve_targets(model, images, target)
        maps = Saliency(model).attribute(fresh_input(images), target=targets.tolist(), abs=True)
    return maps.amax(dim=1, keepdim=True).detach().float().cpu()
