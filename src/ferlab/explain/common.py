"""What every method needs: targets, a guard that leaves the model as it found it, and the
conv layers a CAM method can look at."""

from __future__ import annotations

import contextlib
import math
import weakref

import numpy as np
import torch
from torch import nn

from ferlab.errors import FerlabError, NotApplicable, UnknownChoice
from ferlab.models.layers import input_crop


def model_device(model: nn.Module) -> torch.device:
    """Where ``model`` runs: its parameters' device; the CPU for a model without parameters (an
    ONNX graph, ``ferlab.graph``)."""
    return next(model.parameters(), torch.empty(0)).device


def gives_gradients(model: nn.Module) -> bool:
    """Whether gradients flow through ``model`` to its input; an ONNX graph (``ferlab.graph``)
    answers only, so it sets ``gives_gradients = False`` and only gradient-free methods explain it."""
    return getattr(model, "gives_gradients", True)


def check_whole(method: str, name: str, value, low: int, high: int | None = None) -> None:
    """An option that counts something (pixels, samples) must be a whole number in [low, high]:
    API callers pass options as they typed them, and a string or 0 would fail deep inside."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise FerlabError(f"{method}: {name} must be a whole number, not {value!r}")
    if value < low or (high is not None and value > high):
        allowed = f"{low}..{high}" if high is not None else f"at least {low}"
        raise FerlabError(f"{method}: {name} {value} must be {allowed}")


def check_finite(method: str, name: str, value) -> None:
    """An option in model-input units must be a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
        raise FerlabError(f"{method}: {name} must be a finite number in model-input units, not {value!r}")


def resolve_targets(model: nn.Module, images: torch.Tensor, target) -> torch.Tensor:
    """None -> the predicted class of each image; int -> that class for all; sequence/tensor -> one
    class per image. Returns (N,) int64."""
    n = images.shape[0]
    if target is None:
        with torch.no_grad():
            return model(images).argmax(1)
    if isinstance(target, int):
        return torch.full((n,), target, dtype=torch.int64)
    targets = torch.as_tensor(target, dtype=torch.int64).flatten()
    if targets.numel() != n:
        raise ValueError(f"got {targets.numel()} targets for {n} images")
    return targets


@contextlib.contextmanager
def evaluation_mode(model: nn.Module):
    """Eval mode (dropout off, batch-norm running statistics) for the duration; the previous mode
    is restored and no parameter gradient is left behind."""
    was_training = model.training
    grads = [p.grad for p in model.parameters()]
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
        for p, g in zip(model.parameters(), grads):
            p.grad = g


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The children of ``model.features`` that contain a convolution, shallow to deep."""
    features = getattr(model, "features", None)
    if features is None:
        return []
    return [(name, child) for name, child in features.named_children()
            if isinstance(child, nn.Conv2d) or any(isinstance(m, nn.Conv2d) for m in child.modules())]


MIN_CAM_SIDE = 6  # pixels: the default CAM layer's smallest output side (a 3x3 map paints one blob per face)


def layer_sides(model: nn.Module, size: int = 48) -> dict[str, int]:
    """The smaller output side of each conv layer (``conv_layers``) for a ``size`` x ``size`` face.
    Probed once per model and size, and again only if its layers change: the probe is a forward
    pass, which was half of a one-face Grad-CAM (9 of 20 ms on two cores)."""
    layers = tuple(model.features.children())
    known = _PROBED_SIDES.get(model)
    if known is None or known[0] != layers:
        known = (layers, {})
        _PROBED_SIDES[model] = known
    if size not in known[1]:
        known[1][size] = probe_sides(model, size)
    return dict(known[1][size])


_PROBED_SIDES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (its layers, {size: sides})


def probe_sides(model: nn.Module, size: int) -> dict[str, int]:
    """``layer_sides`` measured: a blank face through ``model.features``."""
    parameter = next(model.parameters())
    x = torch.zeros(1, 1, size, size, device=parameter.device, dtype=parameter.dtype)
    names, sides = {name for name, _ in conv_layers(model)}, {}
    with evaluation_mode(model), torch.no_grad():
        for name, child in model.features.named_children():
            x = child(x)
            if name in names:
                sides[name] = min(x.shape[-2:])
    return sides


def default_layer(model: nn.Module, sides: dict[str, int] | None = None) -> str:
    """The deepest conv layer whose output is at least MIN_CAM_SIDE a side (the deepest layer when
    none is): deep enough to see expressions, fine enough to tell the mouth from the eyes.
    ``sides``: ``layer_sides(model)`` where the caller has it already."""
    sides = sides or layer_sides(model)
    fine = [name for name, side in sides.items() if side >= MIN_CAM_SIDE]
    return fine[-1] if fine else list(sides)[-1]


def check_layer(model: nn.Module, layer: str | int | None) -> None:
    """Raise UnknownChoice now for a ``layer`` the model does not have (before a batch or a
    server starts), or for any layer of an ONNX graph (its explanations take none); None, and
    models without conv layers (their methods say NotApplicable), pass."""
    if layer is not None and not gives_gradients(model):
        raise UnknownChoice(f"--layer {layer}: {getattr(model, 'source', 'this model')} is an ONNX graph, with no conv "
                            "layer to pick; its explanations (LIME, occlusion) take none")
    if layer is not None and conv_layers(model):
        pick_layer(model, layer)


def pick_layer(model: nn.Module, layer: str | int | None) -> tuple[str, nn.Module]:
    """A conv layer by name or position in ``conv_layers`` (default: ``default_layer``; ``-1`` or
    ``"last"``: the deepest)."""
    layers = conv_layers(model)
    if not layers:
        raise NotApplicable(getattr(model, "no_conv_layer", None) or
                            f"{model.__class__.__name__} has no convolutional layers (a fully connected model); "
                            "methods that look at a conv layer do not apply to it")
    if layer is None:
        layer = default_layer(model)
    if layer == "last":
        return layers[-1]
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):  # True was layer 1
        if not -len(layers) <= layer < len(layers):
            raise UnknownChoice(f"no conv layer at position {layer}; there are {len(layers)}")
        return layers[layer]
    for name, module in layers:
        if name == str(layer):
            return name, module
    raise UnknownChoice(f"no conv layer {layer!r}; available: {', '.join(n for n, _ in layers)} or last")


def truncated_features(model: nn.Module, layer: str | int | None) -> tuple[str, nn.Sequential]:
    """(name, front): ``layer``'s name and ``model.features`` up to and including it, seeing the
    input as the whole model does (a slice of ``features`` would lose the centre crop of a model
    trained on crops: ``models.layers.crop_input``). The model itself is not touched."""
    name, _ = pick_layer(model, layer)
    names = [n for n, _ in model.features.named_children()]
    front = model.features[: names.index(name) + 1]  # a new Sequential over the same layers
    crop = input_crop(model)
    if crop is not None:
        front.register_forward_pre_hook(crop)
    return name, front


def split_at(model: nn.Module, layer: str | int | None):
    """(front, back): ``model.features`` up to and including ``layer`` (``truncated_features``),
    and the rest of the model, so that ``back(front(x)) == model(x)`` with no hooks on the model."""
    name, front = truncated_features(model, layer)
    rest = model.features[len(front):]
    return front, lambda activations: model.head(rest(activations))


def fresh_input(images: torch.Tensor) -> torch.Tensor:
    """A leaf copy of the inputs that requires grad, so attribution never touches the caller's."""
    return images.detach().clone().requires_grad_(True)
