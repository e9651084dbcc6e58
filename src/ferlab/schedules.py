"""Learning-rate schedules as pure functions of the step (no PyTorch: the config's choices come
from this registry). Each maps (step, total_steps, peak lr, warm-up fraction) to the learning rate
before plateau scaling (``training.plateau_scale``)."""

from __future__ import annotations

import math
from collections.abc import Callable

Schedule = Callable[[int, int, float, float], float]


def warmed_up(step: int, total_steps: int, warmup_fraction: float) -> float | None:
    """The warm-up factor (step + 1) / warm-up steps while warming up, else None."""
    warmup = max(1, round(warmup_fraction * total_steps))
    return (step + 1) / warmup if step < warmup else None


def progress_after_warmup(step: int, total_steps: int, warmup_fraction: float) -> float:
    warmup = max(1, round(warmup_fraction * total_steps))
    return min(1.0, (step - warmup) / max(1, total_steps - warmup))


def constant(step: int, total_steps: int, lr: float, warmup_fraction: float) -> float:
    return lr


def onecycle(step: int, total_steps: int, lr: float, warmup_fraction: float) -> float:
    """Linear warm-up to ``lr`` over ``warmup_fraction`` of the steps, then linear decay to 0."""
    rising = warmed_up(step, total_steps, warmup_fraction)
    return lr * rising if rising is not None else lr * (1.0 - progress_after_warmup(step, total_steps, warmup_fraction))


def cosine(step: int, total_steps: int, lr: float, warmup_fraction: float) -> float:
    """The same warm-up, then half a cosine to 0."""
    rising = warmed_up(step, total_steps, warmup_fraction)
    if rising is not None:
        return lr * rising
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress_after_warmup(step, total_steps, warmup_fraction)))


# name -> schedule; "plateau" is constant here and scaled by plateau_scale as validation stalls.
SCHEDULES: dict[str, Schedule] = {"none": constant, "plateau": constant, "cosine": cosine, "onecycle": onecycle}
