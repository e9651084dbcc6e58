"""Guided Grad-CAM (Selvaraju et al. 2017): guided backpropagation times Grad-CAM, via Captum.

Guided backprop changes the backward pass of ``nn.ReLU`` modules only. On a model whose
nonlinearities are LeakyReLU, Softplus or functional relu it would silently return the plain
gradient times Grad-CAM, so this method refuses such models instead (NotApplicable)."""

from __future__ import annotations

import warnings

import torch
from captum.attr import GuidedGradCam
from torch import nn

from ferlab.explain import NotApplicable, register_method
from ferlab.explain.common import evaluation_mode, fresh_input, pick_layer, resolve_targets

OTHER_NONLINEARITIES = (nn.LeakyReLU, nn.Softplus, nn.ELU, nn.GELU, nn.SiLU, nn.PReLU)


def check_guided_backprop(model: nn.Module) -> None:
    relus = sum(isinstance(m, nn.ReLU) for m in model.modules())
    others = sorted({m.__class__.__name__ for m in model.modules() if isinstance(m, OTHER_NONLINEARITIES)})
    if relus == 0 or others:
        found = ", ".join(others) if others else "no nn.ReLU modules (functional relu?)"
        raise NotApplicable(f"guided backpropagation only changes nn.ReLU modules; this model uses {found}, "
                            "so Guided Grad-CAM would equal gradient x Grad-CAM")


@register_method("guided_gradcam", "Guided Grad-CAM", display="fine")
def guided_gradcam(model: nn.Module, images: torch.Tensor, target=None, layer: str | int | None = None) -> torch.Tensor:
    check_guided_backprop(model)
    with evaluation_mode(model):
        targets = resolve_targets(model, images, target)
        _, module = pick_layer(model, layer)
        with warnings.catch_warnings():  # Captum announces its temporary ReLU hooks; we checked for them above
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            maps = GuidedGradCam(model, module).attribute(fresh_input(images), target=targets.tolist())
    return maps.amax(dim=1, keepdim=True).detach().float().cpu()
