from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ferlab.data.normalize import Normalization
from ferlab.errors import FerlabError
from ferlab.checkpoint import build_architecture, load_model, save_checkpoint
from ferlab.config import config_to_dict, resolve_config
from ferlab.evaluation import (TTA_POLICIES, confusion_matrix, format_metrics, infer, infer_views, metrics, most_confused,
                               tta_view)
from ferlab.tta import CORNERS_AND_CENTRE, choose_tta, window_side


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
    with pytest.raises(FerlabError, match="unknown test-time augmentation 'twenty-crop'"):
        infer(model, constant, norm, tta="twenty-crop")


def symmetric_faces(sample_faces, n: int = 8) -> torch.Tensor:
    """Real faces made mirror-symmetric: the left half of each, and its mirror image on the right."""
    left = sample_faces.split("test").images[:n, :, :24]
    return torch.cat([left, left.flip(-1)], -1)


def test_ten_crop_views_are_the_corners_and_centre_each_mirrored():
    ramp = (torch.arange(48.0)[None, :] + 100 * torch.arange(48.0)[:, None]).expand(1, 1, 48, 48)  # value = 100 row + column
    views = {view[3]: tta_view(ramp, *view, side=44) for view in TTA_POLICIES["ten-crop"] if not view[0]}
    assert len(TTA_POLICIES["ten-crop"]) == 10 and all(v.shape == (1, 1, 44, 44) for v in views.values())
    corners = {(0.0, 0.0): 0, (0.0, 1.0): 4, (1.0, 0.0): 400, (1.0, 1.0): 404, (0.5, 0.5): 202}  # top-left pixel value
    assert {window: float(view[0, 0, 0, 0]) for window, view in views.items()} == corners
    assert torch.equal(tta_view(ramp, True, 1.0, (0, 0), (0.0, 1.0), side=44), views[(0.0, 1.0)].flip(-1))


def test_ten_crop_of_a_symmetric_face_equals_its_flip_view(sample_faces):
    # For a mirror-symmetric face the mirrored top-left window is the top-right window, and so on:
    # the ten views are five distinct ones twice, and the answer is that of the mirror image.
    loaded = load_model("default", device="cpu")
    faces = symmetric_faces(sample_faces)
    x = loaded.normalization.apply(faces)
    for window in ((0.0, 0.0), (1.0, 0.0), (0.5, 0.5)):
        mirror_window = (window[0], 1.0 - window[1])
        assert torch.equal(tta_view(x, True, 1.0, (0, 0), window), tta_view(x, False, 1.0, (0, 0), mirror_window))
    ten = infer(loaded.model, faces, loaded.normalization, tta="ten-crop")
    flipped = infer(loaded.model, faces.flip(-1), loaded.normalization, tta="ten-crop")
    five = infer_views(loaded.model, faces, loaded.normalization, [(False, 1.0, (0, 0), w) for w in CORNERS_AND_CENTRE])
    assert torch.allclose(ten, flipped, atol=1e-5) and torch.allclose(ten, five, atol=1e-5)
    plain = infer(loaded.model, faces, loaded.normalization)
    assert not torch.allclose(ten, plain, atol=1e-3)  # the windows are real views, not the face again


def test_ten_crop_takes_the_training_crop_and_refuses_models_for_whole_faces_only(tmp_path):
    assert window_side(48) == 44 and window_side(40) == 40
    faces = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
    for model, crop in (("cnn", 48), ("fastnet", 40)):
        config = resolve_config("smoke", overrides={"model": model, "crop": crop})
        save_checkpoint(tmp_path / f"{model}.pt", {"config": config_to_dict(config), "normalization": Normalization("rescale").to_dict(),
                                                    "model": build_architecture(config).state_dict()})
    cropped = load_model(tmp_path / "fastnet.pt")
    sides = []  # what the convolutions see (this hook runs after the model's own centre crop)
    cropped.model.features.register_forward_pre_hook(lambda module, inputs: sides.append(inputs[0].shape[-1]))
    assert cropped.logits(faces, "ten-crop").shape == (3, 7) and sides == [40] * 10
    centre = infer_views(cropped.model, faces, cropped.normalization, [(False, 1.0, (0, 0), (0.5, 0.5))], window_side=40)
    assert torch.equal(cropped.logits(faces), centre) and sides[-1] == 40  # a crop model answers on the centre crop
    with pytest.raises(FerlabError, match="model 'cnn' takes only whole 48x48 faces, not 44-pixel crops"):
        load_model(tmp_path / "cnn.pt").logits(faces, "ten-crop")


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


def test_choose_tta_takes_the_best_and_of_equals_the_fewest_views():
    assert choose_tta({"none": 0.60, "flip": 0.62, "flip-zoom": 0.61}) == "flip"
    assert choose_tta({"ten-crop": 0.62, "flip-zoom": 0.62, "flip": 0.62, "none": 0.5}) == "flip"
    assert choose_tta({"ten-crop": 0.63, "none": 0.62}) == "ten-crop"
    with pytest.raises(FerlabError, match="unknown test-time augmentation"):
        choose_tta({"twenty-crop": 0.9})


def test_inference_shows_a_bar_on_a_terminal_for_more_than_one_batch(capsys, monkeypatch):
    """The bar is titled, counts faces and goes on stderr; piped, or for one batch, nothing is
    written; the logits are the same with and without it."""
    import sys

    model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7)).eval()
    faces = torch.randint(0, 256, (600, 48, 48), dtype=torch.uint8)
    quiet = infer(model, faces, Normalization("rescale"), batch_size=256, progress="PrivateTest")
    assert capsys.readouterr().err == ""  # captured: not a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    shown = infer(model, faces, Normalization("rescale"), batch_size=256, progress="PrivateTest")
    err = capsys.readouterr().err
    assert "PrivateTest" in err and "face" in err and torch.equal(shown, quiet)
    infer(model, faces[:256], Normalization("rescale"), batch_size=256, progress="PrivateTest")  # one batch
    infer(model, faces, Normalization("rescale"), batch_size=256)  # no title: no bar
    assert capsys.readouterr().err == ""


def test_evaluate_shows_its_split_in_the_bar_on_a_terminal(capsys, monkeypatch, tmp_path):
    import sys

    from ferlab.cli import main
    from tests.conftest import FULL_ARCHIVE

    if not FULL_ARCHIVE.exists():
        pytest.skip(f"{FULL_ARCHIVE} not found")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["evaluate", "default-fast", "--data", str(FULL_ARCHIVE), "--split", "test", "-o", str(tmp_path)]) == 0
    assert "PrivateTest (fer2013-images.tar.xz)" in capsys.readouterr().err
