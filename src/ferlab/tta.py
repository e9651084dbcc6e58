"""Test-time augmentation policies, as plain data (no PyTorch: the command line reads the names).

Each policy is the views of a face whose logits are averaged, as (mirrored, zoom); zoom > 1
enlarges the face (samples its centre), < 1 shrinks it (edge pixels repeat), warped as in
training (``evaluation.tta_view``). `flip-zoom` was chosen on PublicTest for the shipped model
among flips, shifts of 2 pixels and zooms of 10% (benchmarks/tta.py, BENCHMARKS.md).
"""

from __future__ import annotations

from ferlab.errors import FerlabError

TTA_POLICIES: dict[str, tuple[tuple[bool, float], ...]] = {
    "none": ((False, 1.0),),
    "flip": ((False, 1.0), (True, 1.0)),
    "flip-zoom": ((False, 1.0), (True, 1.0), (False, 0.9), (True, 0.9), (False, 1.1), (True, 1.1)),
}


def check_tta(policy: str) -> str:
    if policy not in TTA_POLICIES:
        raise FerlabError(f"unknown test-time augmentation {policy!r}; available: {', '.join(TTA_POLICIES)}")
    return policy
