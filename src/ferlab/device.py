"""Where and in what precision models run: the one place that decides (training, inference,
explanations and benchmarks all ask here)."""

from __future__ import annotations

import ctypes
import functools
import os
import sys

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


# glibc's mallopt parameters (malloc.h) and how much freed memory the heap may keep.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
KEPT_FREE_BYTES = 1 << 30  # 1 GiB: above a training step's or a batch's working set (peak RSS 1.2 GB in training)


def reuse_freed_memory(device: torch.device) -> bool:
    """On a CPU, have the C library's malloc keep freed memory for the next batch instead of
    giving it back to the system; True where that was set.

    glibc serves blocks over its mmap threshold (128 KiB, rising to at most 32 MiB as blocks are
    freed) from fresh mmap pages and unmaps them when freed, so every step's activations (37.7 MB
    for the cpu preset's first layer at batch 256) came back as new pages: 22,000-27,000 page
    faults, about 100 MB zero-filled by the kernel, per training step. Served from the heap and
    kept, the same arithmetic ran 1.10x faster in training and 1.55-1.60x in batch inference on 2
    cores, bit for bit the same numbers (``benchmarks/allocator.py``). The peak memory is
    unchanged; up to ``KEPT_FREE_BYTES`` of it stay with the process once freed.
    ``FERLAB_REUSE_MEMORY=0`` leaves malloc as it is. Not glibc (macOS, Windows, musl): no change.
    """
    return device.type == "cpu" and os.environ.get("FERLAB_REUSE_MEMORY", "1") != "0" and _keep_freed_memory()


@functools.cache
def _keep_freed_memory() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the C library this process runs on
    if mallopt is None:
        return False
    # No mmap for large blocks (they come from the heap and are reused), and no trimming of
    # the heap's top below KEPT_FREE_BYTES (else freed blocks would go back to the system there).
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEPT_FREE_BYTES))
