"""Test-time augmentation policies, as plain data (no PyTorch: the command line reads the names).

Each policy is the views of a face whose logits are averaged, as (mirrored, zoom[, shift[,
window]]): zoom > 1 enlarges the face (samples its centre), < 1 shrinks it (edge pixels repeat),
warped as in training (``evaluation.tta_view``); shift moves it by whole pixels; window keeps
one square of ``window_side`` pixels, given as (top, left) fractions of the room there is
(0: top or left edge, 0.5: centre, 1: bottom or right edge). `flip-zoom` was chosen on
PublicTest for the shipped model among flips, shifts of 2 pixels and zooms of 10%
(benchmarks/tta.py, BENCHMARKS.md); `ten-crop` is the recipe of the strongest from-scratch
papers: the four corners and the centre, each also mirrored.
"""

from __future__ import annotations

from ferlab.errors import FerlabError
from ferlab.labels import IMAGE_SIZE

CORNERS_AND_CENTRE = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (0.5, 0.5))

TTA_POLICIES: dict[str, tuple[tuple, ...]] = {
    "none": ((False, 1.0),),
    "flip": ((False, 1.0), (True, 1.0)),
    "flip-zoom": ((False, 1.0), (True, 1.0), (False, 0.9), (True, 0.9), (False, 1.1), (True, 1.1)),
    "ten-crop": tuple((mirrored, 1.0, (0, 0), window) for window in CORNERS_AND_CENTRE for mirrored in (False, True)),
}

TEN_CROP_SIDE = 44  # pixels: the window for a model trained on whole faces (the papers' 44 of 48)


def window_side(trained_crop: int) -> int:
    """The side of a crop view: the training crop of a model trained on crops, else 44 pixels."""
    return trained_crop if trained_crop < IMAGE_SIZE else TEN_CROP_SIDE


def uses_windows(policy: str) -> bool:
    return any(len(view) > 3 and view[3] is not None for view in TTA_POLICIES[check_tta(policy)])


def choose_tta(accuracies: dict[str, float]) -> str:
    """The policy of ``accuracies`` (policy -> accuracy on PublicTest) that scored highest; of
    equals, the one with the fewest views, the cheapest to run."""
    return max(accuracies, key=lambda policy: (accuracies[policy], -len(TTA_POLICIES[check_tta(policy)])))


def check_tta(policy: str) -> str:
    if not isinstance(policy, str) or policy not in TTA_POLICIES:
        raise FerlabError(f"unknown test-time augmentation {policy!r}; available: {', '.join(TTA_POLICIES)}")
    return policy
