from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ferlab.data.normalize import Normalization
from ferlab.errors import FerlabError
from ferlab.evaluation import TTA_POLICIES, confusion_matrix, format_metrics, infer, metrics, most_confused, tta_view


def test_metrics_on_hand_made_logits():
    labels = torch.tensor([0, 0, 1, 1, 2, 4])
    predictions = torch.tensor([0, 1, 1, 1, 4, 4])
    logits = torch.nn.functional.one_hot(predictions, 7).float() * 10
    result = metrics(logits, labels)
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["per_class"]["angry"] == {"precision": 1.0, "recall": 0.5, "f1": round(2 / 3, 4), "support": 2}
    assert result["per_class"]["disgust"]["precision"] == round(2 / 3, 4)
    assert result["per_class"]["sad"]["recall"] == 1.0
    assert result["confusion"][2][4] == 1 and result["confusion_normalized"][0] == [0.5, 0.5, 0, 0, 0, 0, 0]
    assert result["most_confused"][0] == {"true": "fear", "predicted": "sad", "rate": 1.0, "count": 1}
    assert result["loss"] == pytest.approx(-math.log(math.exp(10) / (math.exp(10) + 6)) * 4 / 6 + (10 + math.log(math.exp(10) + 6) - 10) * 2 / 6, rel=1e-4)


def test_confusion_rows_are_true_classes():
    confusion = confusion_matrix(torch.tensor([3, 3, 5]), torch.tensor([3, 6, 6]))
    assert confusion[3, 3] == 1 and confusion[6, 3] == 1 and confusion[6, 5] == 1 and confusion.sum() == 3
    assert [p["true"] for p in most_confused(confusion)] == ["neutral", "neutral"]


class LeftRight(nn.Module):
    """Logit 0 = mean of the left half, logit 1 = mean of the right half: flips swap them."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        left, right = x[..., :24].mean((1, 2, 3)), x[..., 24:].mean((1, 2, 3))
        return torch.stack([left, right] + [torch.zeros_like(left)] * 5, 1) * self.scale


def test_flip_tta_is_exact_on_symmetric_input_and_averages_otherwise():
    model = LeftRight()
    half = torch.randint(0, 256, (5, 48, 24), dtype=torch.uint8)
    symmetric = torch.cat([half, half.flip(-1)], -1)
    norm = Normalization("rescale")
    assert torch.equal(infer(model, symmetric, norm, tta="flip"), infer(model, symmetric, norm))
    asymmetric = torch.cat([torch.zeros(2, 48, 24, dtype=torch.uint8), torch.full((2, 48, 24), 255, dtype=torch.uint8)], -1)
    plain, averaged = infer(model, asymmetric, norm), infer(model, asymmetric, norm, tta="flip")
    assert plain[0, :2].tolist() == [0.0, 1.0] and averaged[0, :2].tolist() == [0.5, 0.5]


def test_zoom_views_scale_about_the_centre_and_repeat_the_edges():
    ramp = torch.arange(48.0).expand(2, 1, 48, 48)  # pixel value = its column
    columns = torch.arange(48.0)
    for zoom in (1.1, 0.9):  # in: the centre spreads out; out: the edge columns repeat
        expected = (23.5 + (columns - 23.5) / zoom).clamp(0, 47)
        assert torch.allclose(tta_view(ramp, False, zoom)[0, 0, 10], expected, atol=1e-4)
    assert torch.equal(tta_view(ramp, True, 1.0), ramp.flip(-1)) and torch.equal(tta_view(ramp, False, 1.0), ramp)
    moved = tta_view(ramp, False, 1.0, shift=(2, 0))  # content moves 2 pixels right; the left edge repeats
    assert torch.allclose(moved[0, 0, 10], (columns - 2).clamp(min=0), atol=1e-4)


def test_every_tta_policy_leaves_a_constant_face_alone_and_unknown_ones_are_refused():
    model = LeftRight()
    constant = torch.full((3, 48, 48), 200, dtype=torch.uint8)
    norm = Normalization("rescale")
    for policy in TTA_POLICIES:
        assert torch.allclose(infer(model, constant, norm, tta=policy), infer(model, constant, norm), atol=1e-6)
    with pytest.raises(FerlabError, match="unknown test-time augmentation 'ten-crop'"):
        infer(model, constant, norm, tta="ten-crop")


def test_infer_batches_equal_one_call_and_restore_train_mode():
    model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7), nn.Dropout(0.5)).train()
    images = torch.randint(0, 256, (10, 48, 48), dtype=torch.uint8)
    norm = Normalization("standardize", 0.5, 0.25)
    assert torch.allclose(infer(model, images, norm, batch_size=3), infer(model, images, norm, batch_size=100))
    assert model.training


def test_normalization_kinds():
    images = torch.tensor([[0, 255]], dtype=torch.uint8).expand(48, 2).reshape(1, 48, 2).repeat(1, 1, 24)
    assert Normalization("none").apply(images).max() == 255
    assert Normalization("rescale").apply(images).max() == 1
    fitted = Normalization.fit("standardize", images)
    assert fitted.mean == pytest.approx(0.5) and fitted.apply(images).mean().abs() < 1e-6


def test_ensemble_of_identical_models_equals_the_model():
    from ferlab.ensemble import combine, fit_weights

    probabilities = torch.softmax(torch.randn(20, 7), 1)
    assert torch.allclose(combine([probabilities, probabilities, probabilities]), probabilities, atol=1e-6)
    labels = probabilities.argmax(1)
    weights = fit_weights([probabilities, probabilities], labels)
    assert torch.allclose(combine([probabilities, probabilities], weights), probabilities, atol=1e-6)


def test_fitted_weights_prefer_the_better_model():
    from ferlab.ensemble import fit_weights

    labels = torch.randint(0, 7, (200,))
    good = torch.nn.functional.one_hot(labels, 7).float() * 0.9 + 0.1 / 7
    noise = torch.softmax(torch.randn(200, 7), 1)
    weights = fit_weights([noise, good], labels)
    assert weights[1] > 0.9 and torch.isclose(weights.sum(), torch.tensor(1.0))


def test_standardize_statistics_match_the_direct_computation():
    images = torch.randint(0, 256, (50, 48, 48), dtype=torch.uint8)
    fitted = Normalization.fit("standardize", images)
    pixels = images.double() / 255
    assert fitted.mean == pytest.approx(float(pixels.mean()), rel=1e-12)
    assert fitted.std == pytest.approx(float(pixels.std()), rel=1e-12)


def test_macro_f1_averages_over_the_classes_present_only():
    """Issue 11: six classes present, one with no faces; its F1 of 0 must not drag the average."""
    labels = torch.tensor([0, 0, 1, 2, 3, 4, 5])  # no neutral (6)
    predictions = torch.tensor([0, 1, 1, 2, 3, 4, 6])
    result = metrics(torch.nn.functional.one_hot(predictions, 7).float() * 5, labels)
    f1 = {"angry": 2 / 3, "disgust": 2 / 3, "fear": 1.0, "happy": 1.0, "sad": 1.0, "surprise": 0.0}
    assert result["macro_f1"] == pytest.approx(sum(f1.values()) / 6, abs=1e-4)
    assert result["macro_f1_classes"] == 6
    assert "(over the 6 classes present)" in format_metrics(result, "t")


def test_split_titles_name_the_source_and_the_official_split_only_when_it_is_one(sample_faces):
    assert sample_faces.split_title("test") == "PrivateTest (fer2013-sample.tar.gz)"
    import dataclasses

    drawn = dataclasses.replace(sample_faces, official_splits=False, source="/data/train.csv")
    assert drawn.split_title("val") == "val split of train.csv"
