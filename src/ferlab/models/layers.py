"""Building blocks shared by the model families."""

from __future__ import annotations

from torch import nn

from ferlab.labels import IMAGE_SIZE, NUM_CLASSES

# Activations the seed notebooks tried; a registry so a config names them.
ACTIVATIONS = {
    "relu": lambda: nn.ReLU(),  # not in-place: explanation hooks (Captum) need the pre-activation intact
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "elu": lambda: nn.ELU(),
    "softplus": lambda: nn.Softplus(),
}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; available: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def conv_unit(in_channels: int, out_channels: int, act: str = "relu") -> nn.Sequential:
    """3x3 convolution (same padding) + batch norm + activation."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        activation(act),
    )


def dense_unit(in_features: int, out_features: int, dropout: float, act: str = "relu") -> nn.Sequential:
    """Linear + batch norm + activation + dropout."""
    return nn.Sequential(
        nn.Linear(in_features, out_features, bias=False),
        nn.BatchNorm1d(out_features),
        activation(act),
        nn.Dropout(dropout),
    )


def conv_blocks(channels, act: str, after_block) -> tuple[list[nn.Module], int]:
    """Conv units block by block (``channels`` like ((64, 64), (128, 128))), with the modules
    ``after_block()`` returns (pooling, dropout) after each block. Returns (layers, out channels)."""
    layers: list[nn.Module] = []
    in_channels = 1
    for block in channels:
        for width in block:
            layers.append(conv_unit(in_channels, width, act))
            in_channels = width
        layers += after_block()
    return layers, in_channels


def dense_classifier(in_features: int, widths, dropout: float, act: str) -> list[nn.Module]:
    """Dense units of ``widths``, then the 7-way linear layer."""
    layers: list[nn.Module] = []
    for width in widths:
        layers.append(dense_unit(in_features, width, dropout, act))
        in_features = width
    return layers + [nn.Linear(in_features, NUM_CLASSES)]


class FeaturesHead(nn.Module):
    """A model split into ``features`` (convolutional, spatial output) and ``head`` (to logits)."""

    def __init__(self, features: nn.Module, head: nn.Module):
        super().__init__()
        self.features, self.head = features, head

    def forward(self, x):  # (N, 1, 48, 48) -> (N, 7)
        return self.head(self.features(x))


class CentreCrop:
    """A forward pre-hook that hands the network the centre ``side``-pixel square of a larger
    input: a model trained on random crops answers on the centre crop of a whole face, from every
    entry point (inference, explanations, export), and windows of its own size pass unchanged.
    A hook, not a layer: the weights' names stay those of the uncropped architecture."""

    def __init__(self, side: int):
        self.side = side

    def __call__(self, module: nn.Module, inputs: tuple):
        x = inputs[0]
        if x.shape[-2] <= self.side and x.shape[-1] <= self.side:
            return None
        top, left, height, width = self.window(*x.shape[-2:])
        return (x[..., top:top + height, left:left + width], *inputs[1:])

    def window(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the part of a ``height`` x ``width`` input the network sees."""
        return max(0, (height - self.side) // 2), max(0, (width - self.side) // 2), min(height, self.side), min(width, self.side)


def input_crop(model: nn.Module) -> CentreCrop | None:
    """The centre crop ``crop_input`` put on ``model``, or None (it sees its whole input)."""
    hooks = getattr(model, "features", model)._forward_pre_hooks.values()
    return next((hook for hook in hooks if isinstance(hook, CentreCrop)), None)


def crop_input(model: nn.Module, side: int) -> nn.Module:
    """``model`` answering on the centre ``side`` pixels of its input (nothing changes at 48).
    The crop sits on ``features`` where there is one, so methods that call it directly see it too."""
    if side < IMAGE_SIZE:
        getattr(model, "features", model).register_forward_pre_hook(CentreCrop(side))
    return model
