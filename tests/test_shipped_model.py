"""The default model shipped inside the package: loads with weights_only=True, works with no
training, and reproduces the figure its model card states for the sample faces."""

from __future__ import annotations

import json
import re

import pytest
import torch

from ferlab.checkpoint import load_model, shipped_model_path
from ferlab.cli import main

CARD = shipped_model_path().with_name("MODEL_CARD.md")


def card_figure(label: str) -> float:
    match = re.search(rf"\| {re.escape(label)} \| ([0-9.]+)%", CARD.read_text())
    assert match, f"{label} missing from {CARD}"
    return float(match.group(1)) / 100


def test_shipped_weights_load_as_plain_tensors_and_are_small():
    path = shipped_model_path()
    assert path.stat().st_size < 20 * 2**20
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "ferlab-checkpoint" and "optimizer" not in payload
    assert all(v.dtype in (torch.float16, torch.int64) for v in payload["model"].values())


def test_shipped_model_reproduces_its_card_on_the_sample(sample_faces):
    loaded = load_model("default")
    test = sample_faces.split("test")
    with torch.no_grad():
        predictions = loaded.model(loaded.normalization.apply(test.images)).argmax(1)
    accuracy = float((predictions == test.labels).double().mean())
    # 70 faces: bf16 vs fp32 or another CPU can flip a face or two.
    assert accuracy == pytest.approx(card_figure("sample PrivateTest faces (70)"), abs=2 / 70)


def test_evaluate_default_from_the_command_line(tmp_path, sample_archive, capsys):
    assert main(["evaluate", "default", "--data", str(sample_archive), "--split", "test", "--out", str(tmp_path)]) == 0
    # Not the data it was trained on (the full archive): its evaluation is named after the sample.
    written = list(tmp_path.glob("eval-test-on-fer2013-sample.tar.gz-*.json"))
    assert len(written) == 1 and not (tmp_path / "eval-test.json").exists()
    assert "PrivateTest (fer2013-sample.tar.gz): accuracy" in capsys.readouterr().out
    evaluations = json.loads((tmp_path / "metrics.json").read_text())["evaluations"]
    assert [e["data"] for e in evaluations.values()] == [str(sample_archive)]
