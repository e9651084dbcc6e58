"""Where and in what precision models run: the one place that decides (training, inference,
explanations and benchmarks all ask here)."""

from __future__ import annotations

import torch

from ferlab.errors import FerlabError


def choose_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else the CPU; ``cpu``, ``cuda`` or ``cuda:K``. A GPU that is
    not there, or another name, is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise FerlabError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:K")
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise FerlabError(f"device {name} requested but no such CUDA device is available")
    return device


def autocast_for(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA, and on CPUs with native bf16 (else it would be slower than fp32)."""
    if device.type == "cpu":
        is_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
        enabled = enabled and bool(is_bf16())
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
