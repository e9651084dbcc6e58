"""How explanation panels are drawn: one drawer per display kind, each checked on a known map."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from ferlab.explain import DISPLAYS
from ferlab.report.explain_figures import PANEL_DRAWERS


def drawn(kind: str, face: np.ndarray, map_: torch.Tensor) -> np.ndarray:
    """The array the drawer gave imshow."""
    figure, axis = plt.subplots()
    try:
        PANEL_DRAWERS[kind](axis, face, map_)
        return np.asarray(axis.images[0].get_array())
    finally:
        plt.close(figure)


def halves() -> torch.Tensor:
    """A (1, 48, 48) map: +1 on the left half, -1 on the right."""
    map_ = torch.ones(1, 48, 48)
    map_[..., 24:] = -1
    return map_


def test_every_explanation_display_has_a_drawer():
    assert set(DISPLAYS) <= set(PANEL_DRAWERS) and "gray" in PANEL_DRAWERS


def test_signed_panels_are_red_for_the_class_and_blue_against_it():
    image = drawn("signed", np.full((48, 48), 128, np.uint8), halves())
    left, right = image[:, :24].mean((0, 1)), image[:, 24:].mean((0, 1))
    assert left[0] > left[2] + 0.3 and right[2] > right[0] + 0.3


@pytest.mark.parametrize("kind", ["heat", "fine"])
def test_heat_panels_show_only_the_positive_part(kind):
    image = drawn(kind, np.full((48, 48), 128, np.uint8), halves()).astype(np.float64)
    left, right = image[:, :24], image[:, 24:]
    assert np.ptp(right.reshape(-1, *right.shape[2:]), axis=0).max() == 0  # the negative half is all one colour
    assert not np.allclose(left.mean((0, 1)), right.mean((0, 1)))


def test_heat_panels_lay_the_map_over_the_face_and_fine_ones_do_not():
    face = np.zeros((48, 48), np.uint8)
    face[:, 24:] = 255
    flat = torch.zeros(1, 48, 48)
    heat, fine = drawn("heat", face, flat), drawn("fine", face, flat)
    assert heat[:, 24:].mean() > heat[:, :24].mean() + 100  # the face shows through
    assert np.ptp(fine) == 0  # the map alone: the face does not


def test_gray_panels_are_the_faces_they_are_given():
    masked = torch.arange(48 * 48, dtype=torch.int64).reshape(48, 48).remainder(256).to(torch.uint8)
    assert np.array_equal(drawn("gray", np.zeros((48, 48), np.uint8), masked), masked.numpy())

