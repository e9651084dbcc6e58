"""Where and in what precision models run: the one place that decides (training, inference,
explanations and benchmarks all ask here)."""

from __future__ import annotations

import torch

from ferlab.errors import FerlabError


def choose_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else the CPU; ``cuda`` without a GPU is a one-line error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise FerlabError("device cuda requested but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def autocast_for(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA, and on CPUs with native bf16 (else it would be slower than fp32)."""
    if device.type == "cpu":
        is_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
        enabled = enabled and bool(is_bf16())
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
