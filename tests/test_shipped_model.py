"""The models shipped inside the package (`default` and its student `default-fast`): they load with
weights_only=True, work with no training, and reproduce the figures their model cards state for
the sample faces."""

from __future__ import annotations

import json
import re

import pytest
import torch

from ferlab.checkpoint import SHIPPED_MODELS, load_model, read_checkpoint, shipped_model_path
from ferlab.cli import main
from ferlab.distill import training_seconds


def card_path(name: str):
    """Each shipped model's card beside its weights: MODEL_CARD.md for `default`, MODEL_CARD-NAME.md for the others."""
    return shipped_model_path(name).with_name("MODEL_CARD.md" if name == "default" else f"MODEL_CARD-{name}.md")


def card_figure(name: str, label: str) -> float:
    card = card_path(name)
    match = re.search(rf"\| {re.escape(label)} \| ([0-9.]+)%", card.read_text())
    assert match, f"{label} missing from {card}"
    return float(match.group(1)) / 100


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_shipped_weights_load_as_plain_tensors_and_are_small(name):
    path = shipped_model_path(name)
    assert path.stat().st_size < 20 * 2**20
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "ferlab-checkpoint" and "optimizer" not in payload
    assert all(v.dtype in (torch.float16, torch.int64) for v in payload["model"].values())


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_shipped_model_reproduces_its_card_on_the_sample(name, sample_faces):
    loaded = load_model(name)
    test = sample_faces.split("test")
    with torch.no_grad():
        predictions = loaded.model(loaded.normalization.apply(test.images)).argmax(1)
    accuracy = float((predictions == test.labels).double().mean())
    # 70 faces: bf16 vs fp32 or another CPU can flip a face or two.
    assert accuracy == pytest.approx(card_figure(name, "sample PrivateTest faces (70)"), abs=2 / 70)


def test_default_fast_is_the_lean_student_of_default_and_its_card_states_the_whole_training_time():
    student = read_checkpoint(shipped_model_path("default-fast"))
    assert student["config"]["model_options"] == {"stem": False, "pool_first": True}  # the cpu preset's lean net
    assert [teacher["source"] for teacher in student["distillation"]["teachers"]] == ["default"]
    whole = training_seconds(student)  # its own epochs, its teachers' and any starting weights'
    assert whole > sum(row["seconds"] for row in student["history"]) + student["distillation"]["teachers_train_seconds"] - 1e-6
    assert f"{whole / 60:.0f} minutes" in card_path("default-fast").read_text()


def test_evaluate_default_from_the_command_line(tmp_path, sample_archive, capsys):
    assert main(["evaluate", "default", "--data", str(sample_archive), "--split", "test", "--out", str(tmp_path)]) == 0
    # Not the data it was trained on (the full archive): its evaluation is named after the sample.
    written = list(tmp_path.glob("eval-test-on-fer2013-sample.tar.gz-*.json"))
    assert len(written) == 1 and not (tmp_path / "eval-test.json").exists()
    assert "PrivateTest (fer2013-sample.tar.gz): accuracy" in capsys.readouterr().out
    evaluations = json.loads((tmp_path / "metrics.json").read_text())["evaluations"]
    assert [e["data"] for e in evaluations.values()] == [str(sample_archive)]


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_ferlab_evaluate_reproduces_each_cards_sample_figure(name, tmp_path, sample_archive, capsys):
    assert main(["evaluate", name, "--data", str(sample_archive), "--split", "test", "--out", str(tmp_path)]) == 0
    evaluation = next(iter(json.loads((tmp_path / "metrics.json").read_text())["evaluations"].values()))
    assert evaluation["count"] == 70
    assert evaluation["accuracy"] == pytest.approx(card_figure(name, "sample PrivateTest faces (70)"), abs=2 / 70)
