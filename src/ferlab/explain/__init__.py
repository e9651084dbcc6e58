"""Explanation methods, one module each, one signature:

    method(model, images, target=None, **options) -> Tensor[N, 1, 48, 48]   (raw, float32, CPU)

``images`` are model inputs, (N, 1, 48, 48) float, already normalised. ``target`` is None (the
predicted class), an int (one class for all), or one class per image. A batch gives the same maps
as one-by-one calls; no hooks stay on the model; its weights and train/eval mode are unchanged.
Post-processing (ReLU, normalising, masks, overlays) lives in ``postprocess``.

Every method registers when this package is imported, so each imports its libraries (Captum, LIME,
scikit-image) inside its function: LIME's scikit-learn alone took 1.2 of the 1.7 s that ``ferlab
photo`` and ``Model.detect`` spent importing this package, though neither runs LIME.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ferlab.errors import NotApplicable, UnknownChoice
from ferlab.explain.common import gives_gradients, model_device

Method = Callable[..., torch.Tensor]
DISPLAYS = ("heat", "fine", "signed")  # how a map is drawn: ferlab.report.explain_figures.PANEL_DRAWERS


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its function, the title figures give it, how its maps are drawn
    (``heat``: the positive part over the face; ``fine``: a fine-grained map alone; ``signed``: red
    for the class, blue against), whether it needs gradients, and the options its function accepts
    (with their defaults)."""
    name: str
    title: str
    function: Method
    display: str = "heat"
    gradients: bool = True  # False: forward passes only (LIME, occlusion), so it explains an ONNX graph too

    @property
    def options(self) -> dict[str, object]:
        parameters = list(inspect.signature(self.function).parameters.values())[3:]  # after model, images, target
        return {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD}

    def accepted(self, options: dict) -> dict:
        """The subset of ``options`` this method takes (callers such as the report offer the same
        options, e.g. ``layer`` or ``num_samples``, to every method)."""
        return {k: v for k, v in options.items() if k in self.options}


_METHODS: dict[str, MethodSpec] = {}


def prepared(function: Method, title: str, gradients: bool) -> Method:
    """``function`` with ``images`` moved to the model's device (a model loaded onto the GPU is
    explained there; maps come back on the CPU either way), refused with NotApplicable when it needs
    gradients and the model gives none (an ONNX graph)."""
    @functools.wraps(function)
    def method(model: nn.Module, images: torch.Tensor, target=None, **options) -> torch.Tensor:
        if gradients and not gives_gradients(model):
            source = getattr(model, "source", "this model")
            raise NotApplicable(f"{title} needs gradients and {source} is an ONNX graph that gives answers only; "
                                f"gradient-free methods explain it: {', '.join(gradient_free_methods())}")
        return function(model, images.to(model_device(model)), target, **options)
    return method


def register_method(name: str, title: str, display: str = "heat", gradients: bool = True):
    """Register ``method(model, images, target=None, **options)``; figures, the report and its
    trust table loop over the registered methods, so a new one appears there with no other change.
    ``gradients=False``: the method only runs the model forward, so it explains ONNX graphs too."""
    if display not in DISPLAYS:
        raise ValueError(f"unknown display {display!r}; available: {', '.join(DISPLAYS)}")

    def decorate(function: Method) -> Method:
        wrapped = prepared(function, title, gradients)
        _METHODS[name] = MethodSpec(name, title, wrapped, display, gradients)
        return wrapped
    return decorate


def list_methods() -> list[str]:
    return list(_METHODS)


def gradient_free_methods() -> list[str]:
    """The methods that need only forward passes, so they explain an ONNX graph too."""
    return [name for name, spec in _METHODS.items() if not spec.gradients]


def methods_for(model: nn.Module) -> list[str]:
    """The registered methods that may explain ``model``: all of them, or the gradient-free ones
    for a model that gives no gradients (an ONNX graph). A method may still find the model outside
    its reach (Grad-CAM without conv layers) and raise NotApplicable."""
    return list_methods() if gives_gradients(model) else gradient_free_methods()


def get_spec(name: str) -> MethodSpec:
    if not isinstance(name, str) or name not in _METHODS:
        raise UnknownChoice(f"unknown explanation method {name!r}; available: {', '.join(_METHODS)}")
    return _METHODS[name]


def get_method(name: str) -> Method:
    return get_spec(name).function


def method_title(name: str) -> str:
    return get_spec(name).title


def explain(name: str, model: nn.Module, images: torch.Tensor, target=None, **options) -> torch.Tensor:
    """Method ``name``'s raw maps; an option it does not take is an UnknownChoice naming those it does."""
    spec = get_spec(name)
    unknown = set(options) - set(spec.options)
    if unknown:
        raise UnknownChoice(f"{name} takes no option {', '.join(sorted(unknown))}; "
                            f"its options: {', '.join(spec.options) or 'none'}")
    return spec.function(model, images, target, **options)


# Imported to register their methods, in display order (after the registry they register in).
from ferlab.explain import saliency, gradcam, hirescam, guided_gradcam, lime_method, occlusion  # noqa: E402,F401

__all__ = ["MethodSpec", "explain", "get_method", "get_spec", "gradient_free_methods", "list_methods", "method_title",
           "methods_for", "register_method", "NotApplicable"]
