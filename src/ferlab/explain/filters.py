"""What the filters of a conv layer respond to.

``visualize_filters``: gradient ascent from noise on the mean activation of each filter (Erhan et
al. 2009; the course reports' "filter visualisation"), 200 steps by default, with the light
regularisation that keeps patterns readable: random jitter each step, L2 decay and an occasional
blur (Yosinski et al. 2015). No maintained library does this well, so it is written here.
``feature_maps``: the outputs of a layer's filters for given faces.

Both run ``model.features`` up to the chosen layer (seeing the input as the whole model does; no
hooks on the model), in eval mode, and take gradients
with respect to the input only, so the model is left exactly as it was.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ferlab.device import autocast_for
from ferlab.explain.common import conv_layers, evaluation_mode, model_device, truncated_features


def shallow_middle_deep(model: nn.Module) -> list[str]:
    names = [name for name, _ in conv_layers(model)]
    return [names[0], names[len(names) // 2], names[-1]] if names else []


def feature_maps(model: nn.Module, images: torch.Tensor, layer: str | int | None = None) -> torch.Tensor:
    """(N, 1, 48, 48) model inputs -> (N, C, h, w) activations of ``layer``."""
    _, partial = truncated_features(model, layer)
    device = model_device(model)
    with evaluation_mode(model), torch.no_grad():
        return partial(images.to(device)).float().cpu()


def _blur(x: torch.Tensor) -> torch.Tensor:
    kernel = torch.tensor([1.0, 2.0, 1.0], device=x.device)
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel, groups=x.shape[1])


def visualize_filters(model: nn.Module, layer: str | int | None = None, count: int = 32, steps: int = 200,
                      lr: float = 0.05, jitter: int = 2, decay: float = 1e-3, blur_every: int = 10,
                      seed: int = 0) -> torch.Tensor:
    """(count, 1, 48, 48) inputs, each maximising the mean activation of one filter of ``layer``
    (filters 0..count-1), in the model's input space. All filters ascend together as one batch."""
    _, partial = truncated_features(model, layer)
    device = model_device(model)
    generator = torch.Generator().manual_seed(seed)
    with evaluation_mode(model):
        channels = partial(torch.zeros(1, 1, 48, 48, device=device)).shape[1]
        count = min(count, channels)
        x = (torch.randn(count, 1, 48, 48, generator=generator) * 0.1).to(device).requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=lr)
        index = torch.arange(count, device=device)
        for step in range(steps):
            dx, dy = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
            shifted = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            with autocast_for(device, True):  # a picture, not a measurement: bf16 where native
                activation = partial(shifted)[index, index].float().mean(dim=(1, 2))  # filter i of image i
            loss = -activation.sum() + decay * (x ** 2).sum()
            (grad,) = torch.autograd.grad(loss, x)
            optimizer.zero_grad(set_to_none=True)
            x.grad = grad
            optimizer.step()
            if blur_every and (step + 1) % blur_every == 0 and step + 1 < steps:
                with torch.no_grad():
                    x.copy_(_blur(x))
    return x.detach().float().cpu()
