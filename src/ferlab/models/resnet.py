"""torchvision's ResNet18 adapted to 48x48 grayscale the CIFAR way: a 3x3 stride-1 stem without
max-pool, so stage 1 runs at full resolution (the ImageNet stem would shrink 48 px to 12 before the
first block), dropout before a 7-way classifier.

ImageNet weights come only from a local file (``pretrained=PATH``, a torchvision ResNet18 state
dict); nothing is downloaded. The RGB stem filters are summed to one gray channel; layers whose
shapes differ (the stem when ``stem_kernel`` is 3, the classifier) keep their fresh weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ferlab.errors import FerlabError
from ferlab.labels import NUM_CLASSES
from ferlab.models import register_model
from ferlab.models.layers import FeaturesHead


@register_model("resnet18", "CIFAR-style ResNet18: 3x3 stride-1 gray stem, no max-pool (stage 1 at 48x48), 7-way fc")
def build_resnet18(dropout: float = 0.3, stem_kernel: int = 3, pretrained: str | None = None) -> nn.Module:
    from torchvision.models import resnet18  # here: torchvision takes 1.5 s to import, and only this model needs it

    net = resnet18(weights=None, num_classes=NUM_CLASSES)
    net.conv1 = nn.Conv2d(1, 64, stem_kernel, stride=1, padding=stem_kernel // 2, bias=False)
    if pretrained:
        load_imagenet_weights(net, Path(pretrained))
    features = nn.Sequential(net.conv1, net.bn1, net.relu, net.layer1, net.layer2, net.layer3, net.layer4)
    head = nn.Sequential(net.avgpool, nn.Flatten(), nn.Dropout(dropout), net.fc)
    return FeaturesHead(features, head)


def load_imagenet_weights(net: nn.Module, path: Path) -> list[str]:
    """Copy matching tensors from a torchvision ResNet18 state dict; returns the names skipped."""
    import zipfile

    from ferlab.checkpoint import archive_problem  # here: ferlab.checkpoint builds models

    if path.is_file() and zipfile.is_zipfile(path) and (problem := archive_problem(path)):
        raise FerlabError(f"{path}: {problem}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FerlabError(f"{path}: no such weights file") from None
    except Exception as error:
        raise FerlabError(f"{path}: not a loadable state dict ({error.__class__.__name__}: {error})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if "conv1.weight" in state:
        state = dict(state, **{"conv1.weight": state["conv1.weight"].sum(dim=1, keepdim=True)})
    own = net.state_dict()
    loaded = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not any(k.startswith("layer") for k in loaded):
        raise FerlabError(f"{path}: no ResNet18 weights in this file")
    net.load_state_dict(loaded, strict=False)
    return sorted(set(own) - set(loaded))
