"""Model registry: ``@register_model`` fills a dict; ``build_model(name, **options)`` builds one.

Every model takes (N, 1, 48, 48) float input and returns (N, 7) logits. Convolutional models
expose ``features`` (the conv stack) and ``head`` (pooling/flatten and classifier), so that
explanation methods can split them without hooks.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_model(name: str, description: str = ""):
    def decorate(factory: Callable[..., nn.Module]):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = factory
        _DESCRIPTIONS[name] = description or (factory.__doc__ or "").strip().splitlines()[0]
        return factory
    return decorate


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def describe_model(name: str) -> str:
    return _DESCRIPTIONS[_check(name)]


def model_options(name: str) -> dict[str, object]:
    """The options a model accepts, with their defaults."""
    signature = inspect.signature(_REGISTRY[_check(name)])
    return {p.name: p.default for p in signature.parameters.values() if p.default is not inspect.Parameter.empty}


def _check(name: str) -> str:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return name


def build_model(name: str, **options) -> nn.Module:
    """Build a registered model; unknown names or options raise ValueError listing the valid ones."""
    factory = _REGISTRY[_check(name)]
    accepted = model_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"model {name!r} has no option {', '.join(unknown)}; "
                         f"its options: {', '.join(accepted) or 'none'}")
    for key, value in options.items():  # a switch given "maybe" or 1 would pass as true in an if
        if isinstance(accepted[key], bool) and not isinstance(value, bool):
            raise ValueError(f"model {name!r} option {key} must be true or false, got {value!r}")
    return factory(**options)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Importing the families registers them.
from ferlab.models import cnn, dnn, fast, resnet, vgg  # noqa: E402,F401
from ferlab.models.summary import summarize  # noqa: E402

__all__ = ["register_model", "list_models", "build_model", "count_parameters", "describe_model",
           "model_options", "summarize"]
