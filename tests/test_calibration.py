"""Temperature scaling and the expected calibration error: known answers, and the commands that
fit, store and report them (issue 12, item 6)."""

from __future__ import annotations

import json

import pytest
import torch

from ferlab.calibration import expected_calibration_error, fit_temperature, reliability
from ferlab.checkpoint import load_model, read_checkpoint
from ferlab.cli import main


def test_the_fitted_temperature_undoes_a_known_over_confidence():
    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(40_000, 7, generator=generator) * 1.5
    labels = torch.multinomial(true_logits.softmax(1), 1, generator=generator).flatten()  # drawn from the true model
    assert fit_temperature(true_logits * 2.5, labels) == pytest.approx(2.5, rel=0.05)  # a model 2.5x too sure
    assert fit_temperature(true_logits, labels) == pytest.approx(1.0, rel=0.05)


def test_ece_has_the_known_value():
    probabilities = torch.tensor([[0.95, 0.05] + [0.0] * 5] * 4)  # all at confidence 0.95
    labels = torch.tensor([0, 0, 1, 1])                             # half of them right
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.45)
    result = reliability(probabilities, labels, bins=10)
    assert result["counts"][9] == 4 and result["accuracy"][9] == pytest.approx(0.5)
    assert expected_calibration_error(torch.eye(7), torch.arange(7)) == pytest.approx(0.0)


def test_training_calibrates_and_evaluate_reports_ece(tmp_path, sample_archive, capsys):
    run = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--epochs", "2", "--data", str(sample_archive), "--out", str(run),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    calibration = read_checkpoint(run / "best.pt")["calibration"]
    assert calibration["fitted_on"] == "PublicTest (fer2013-sample.tar.gz)" and calibration["temperature"] > 0
    assert calibration["nll_after"] <= calibration["nll_before"] + 1e-9
    assert f"calibrated on PublicTest (fer2013-sample.tar.gz): temperature {calibration['temperature']:.3f}" in out
    assert load_model(run).temperature == pytest.approx(calibration["temperature"])
    evaluated = json.loads((run / "eval-test.json").read_text())["calibration"]
    assert evaluated["temperature"] == pytest.approx(calibration["temperature"])
    assert 0 <= evaluated["ece_before"] <= 1 and 0 <= evaluated["ece_after"] <= 1
    assert (run / "reliability-test.png").stat().st_size > 1000
    assert "expected calibration error" in out


def test_calibrate_writes_a_file_for_a_checkpoint_and_refuses_to_overwrite_one(tmp_path, sample_archive, capsys):
    assert main(["calibrate", "default", "--data", str(sample_archive)]) == 2
    assert "name the calibrated checkpoint to write with -o" in capsys.readouterr().err
    output = tmp_path / "calibrated.pt"
    assert main(["calibrate", "default", "--data", str(sample_archive), "-o", str(output)]) == 0
    assert read_checkpoint(output)["calibration"]["fitted_on"] == "PublicTest (fer2013-sample.tar.gz)"
    assert "ECE" in capsys.readouterr().out


def test_calibrate_never_writes_over_its_input_or_a_file_that_is_not_a_checkpoint(tmp_path, sample_archive, capsys):
    """-o of default-fast's own file rewrote the shipped model with the sample's temperature, and
    -o photo.png wrote a checkpoint over the photo."""
    import hashlib

    from ferlab.checkpoint import shipped_model_path

    shipped = shipped_model_path("default-fast")
    before = hashlib.sha256(shipped.read_bytes()).hexdigest()
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"a photo")
    copy = tmp_path / "copy.pt"
    copy.write_bytes(shipped.read_bytes())
    for output, message in [(shipped, f"{shipped}: is also an input ({shipped}) and would be replaced"),
                            (photo, f"{photo}: calibrate writes a checkpoint; name the file *.pt")]:
        assert main(["calibrate", "default-fast", "--data", str(sample_archive), "-o", str(output)]) == 2
        assert capsys.readouterr().err.strip().startswith(f"ferlab: error: {message}")
    assert main(["calibrate", str(copy), "--data", str(sample_archive), "-o", str(tmp_path / "." / "copy.pt")]) == 2
    assert "would be replaced" in capsys.readouterr().err
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == before and photo.read_bytes() == b"a photo"
    assert copy.read_bytes() == shipped.read_bytes()
