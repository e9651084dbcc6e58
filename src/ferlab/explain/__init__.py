"""Explanation methods, one module each, one signature:

    method(model, images, target=None, **options) -> Tensor[N, 1, 48, 48]   (raw, float32, CPU)

``images`` are model inputs, (N, 1, 48, 48) float, already normalised. ``target`` is None (the
predicted class), an int (one class for all), or one class per image. A batch gives the same maps
as one-by-one calls; no hooks stay on the model; its weights and train/eval mode are unchanged.
Post-processing (ReLU, normalising, masks, overlays) lives in ``postprocess``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from ferlab.errors import NotApplicable

Method = Callable[..., torch.Tensor]
_METHODS: dict[str, Method] = {}
_TITLES: dict[str, str] = {}


def on_model_device(function: Method) -> Method:
    """``function`` with ``images`` moved to the model's device (a model loaded onto the GPU is
    explained there; maps come back on the CPU either way)."""
    @functools.wraps(function)
    def method(model: nn.Module, images: torch.Tensor, target=None, **options) -> torch.Tensor:
        parameter = next(model.parameters(), None)
        if parameter is not None:
            images = images.to(parameter.device)
        return function(model, images, target, **options)
    return method


def register_method(name: str, title: str):
    def decorate(function: Method) -> Method:
        _METHODS[name] = on_model_device(function)
        _TITLES[name] = title
        return _METHODS[name]
    return decorate


def list_methods() -> list[str]:
    return list(_METHODS)


def method_title(name: str) -> str:
    get_method(name)  # the same error as everywhere for an unknown name
    return _TITLES[name]


def get_method(name: str) -> Method:
    if name not in _METHODS:
        raise ValueError(f"unknown explanation method {name!r}; available: {', '.join(_METHODS)}")
    return _METHODS[name]


def explain(name: str, model: nn.Module, images: torch.Tensor, target=None, **options) -> torch.Tensor:
    return get_method(name)(model, images, target, **options)


from ferlab.explain import gradcam, guided_gradcam, hirescam, lime_method, saliency  # noqa: E402,F401

__all__ = ["explain", "get_method", "list_methods", "method_title", "register_method", "NotApplicable"]
