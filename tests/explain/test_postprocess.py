from __future__ import annotations

import numpy as np
import torch

from ferlab.explain.postprocess import masked_faces, normalize, overlay, relu, top_fraction_mask


def test_top_fraction_mask_keeps_exactly_the_largest():
    maps = torch.arange(48 * 48, dtype=torch.float32).reshape(1, 1, 48, 48)
    mask = top_fraction_mask(maps, 0.25)
    assert int(mask.sum()) == 576 and bool(mask[0, 0, -1, -1]) and not bool(mask[0, 0, 0, 0])
    faces = torch.full((1, 48, 48), 200, dtype=torch.uint8)
    kept = masked_faces(faces, maps, 0.25)
    assert int((kept == 200).sum()) == 576 and int((kept == 0).sum()) == 2304 - 576


def test_normalize_and_relu_ranges():
    maps = torch.randn(3, 1, 48, 48)
    assert 0 <= float(normalize(relu(maps)).min()) and float(normalize(relu(maps)).max()) <= 1
    signed = normalize(maps, signed=True)
    assert float(signed.min()) >= -1 and float(signed.max()) <= 1 and float(signed.min()) < 0


def test_overlay_blends_a_face_with_a_heat_map():
    face = np.full((48, 48), 128, dtype=np.uint8)
    blended = overlay(face, np.zeros((48, 48)), alpha=0.0)
    assert blended.shape == (48, 48, 3) and blended.dtype == np.uint8 and (blended == 128).all()
