"""Guided Grad-CAM (Selvaraju et al. 2017): guided backpropagation (Captum's) times Grad-CAM.

As Captum's GuidedGradCam (tests check it gives the same maps): the Grad-CAM factor is rectified
and upsampled by nearest neighbour. Ours places it on the window a crop-trained model sees
(``gradcam.to_input_size``), where Captum's would stretch it over the whole input.

Guided backprop changes the backward pass of ``nn.ReLU`` modules only. On a model whose
nonlinearities are LeakyReLU, Softplus or functional relu it would silently return the plain
gradient times Grad-CAM, so this method refuses such models instead (NotApplicable)."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ferlab.explain import NotApplicable, register_method
from ferlab.explain.common import evaluation_mode, fresh_input, resolve_targets
from ferlab.explain.gradcam import layer_gradcam, to_input_size

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
    from captum.attr import GuidedBackprop  # here, not at import: see ferlab.explain

    check_guided_backprop(model)
    with evaluation_mode(model):
        targets = resolve_targets(model, images, target)
        cam = to_input_size(layer_gradcam(model, images, targets, layer).relu(), images, model, mode="nearest")
        with warnings.catch_warnings():  # Captum announces its temporary ReLU hooks; we checked for them above
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            guided = GuidedBackprop(model).attribute(fresh_input(images), target=targets.tolist())
    return (guided * cam).amax(dim=1, keepdim=True).detach().float().cpu()
