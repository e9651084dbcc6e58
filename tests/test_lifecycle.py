"""A run's final evaluation: the test-time augmentation is chosen on PublicTest alone and then
reported on both test splits, with the very numbers an independent evaluation gives."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ferlab.checkpoint import LoadedModel, load_model
from ferlab.config import resolve_config
from ferlab.data.normalize import Normalization
from ferlab.lifecycle import report_chosen_tta
from ferlab.models import build_model
from ferlab.runs import evaluate_split
from ferlab.tta import TTA_POLICIES


@pytest.fixture(scope="module")
def shipped():
    return load_model("default")


@pytest.fixture(scope="module")
def more_public_faces(sample_faces):
    """The sample with its 280 Training faces as PublicTest, where views beat one face by several
    faces for the shipped model (flip-zoom 87.9%, flip 86.4%, none 85.4%), and its 70 PublicTest
    faces as Training."""
    return dataclasses.replace(sample_faces, splits=torch.tensor([1, 0, 2])[sample_faces.splits])


def test_the_chosen_tta_is_public_tests_best_and_is_reported_on_both_splits(tmp_path, more_public_faces, shipped):
    results, lines, sample_faces = {"evaluations": {}}, [], more_public_faces
    report_chosen_tta(shipped, sample_faces, tmp_path, results, lines.append)
    assert (tmp_path / f"eval-test-tta-{results['tta']['chosen']}.json").exists()
    elsewhere = tmp_path / "independent"
    elsewhere.mkdir()
    scored = results["tta"]["val_accuracies"]
    assert list(scored) == list(TTA_POLICIES) and results["tta"]["chosen_on"] == "val"
    chosen = results["tta"]["chosen"]
    assert scored[chosen] == max(scored.values())
    assert chosen != "none"
    # the chosen policy's scores are what `ferlab evaluate --tta` finds (every policy's logits equal
    # their own inference's: tests/test_checkpoint.py)
    assert results["val_tta_accuracy"] == scored[chosen]
    assert scored[chosen] == evaluate_split(shipped, sample_faces, "val", elsewhere, tta=chosen)["accuracy"]
    assert results["test_tta_accuracy"] == evaluate_split(shipped, sample_faces, "test", elsewhere, tta=chosen)["accuracy"]
    assert {f"val-tta-{chosen}", f"test-tta-{chosen}"} == set(results["evaluations"])
    assert lines[0].startswith(f"test-time augmentation chosen on PublicTest (fer2013-sample.tar.gz): {chosen} (none ")


def test_a_model_that_takes_no_windows_is_scored_without_ten_crop(tmp_path, sample_faces):
    cnn = LoadedModel(build_model("cnn").eval(), Normalization("rescale"), resolve_config("seed-cnn"), {})
    results = {"evaluations": {}}
    report_chosen_tta(cnn, sample_faces, tmp_path, results, lambda _: None)
    assert list(results["tta"]["val_accuracies"]) == ["none", "flip", "flip-zoom"]
