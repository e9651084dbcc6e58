from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

import ferlab.checkpoint
from ferlab.checkpoint import export_checkpoint, load_model, read_checkpoint, resolve_checkpoint, save_checkpoint
from ferlab.cli import main
from ferlab.config import resolve_config
from ferlab.distill import distillation_loss, load_teachers, training_seconds
from ferlab.errors import FerlabError
from ferlab.models import build_model
from ferlab.training import fit


def test_distillation_loss_is_the_scaled_kl_divergence():
    student = torch.tensor([[2.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0]])
    targets = torch.tensor([[0.5, 0.2, 0.1, 0.05, 0.05, 0.05, 0.05]])
    for temperature in (1.0, 4.0):
        soft = (student / temperature).softmax(1)
        expected = temperature ** 2 * float((targets * (targets.log() - soft.log())).sum())
        assert float(distillation_loss(student, targets, temperature)) == pytest.approx(expected, rel=1e-5)
    assert float(distillation_loss(student, (student / 3.0).softmax(1), 3.0)) == pytest.approx(0.0, abs=1e-6)


def test_soft_targets_are_the_mean_of_the_softened_teachers():
    teachers = load_teachers(["default", "default"], torch.device("cpu"))
    x = teachers.normalization.apply(torch.randint(0, 256, (4, 48, 48), dtype=torch.uint8))
    one = teachers.models[0]
    with torch.no_grad():
        expected = (one.model(x).float() / 2.0).softmax(1)
    targets = teachers.soft_targets(x, 2.0)
    assert torch.allclose(targets, expected, atol=2e-2) and torch.allclose(targets.sum(1), torch.ones(4))
    assert not any(p.requires_grad for p in one.model.parameters())


def test_flipped_soft_targets_are_the_mean_over_the_view_and_its_mirror_image():
    teachers = load_teachers(["default"], torch.device("cpu"))
    faces = torch.randint(0, 256, (4, 48, 48), dtype=torch.uint8)
    x, mirrored = (teachers.normalization.apply(f) for f in (faces, faces.flip(-1)))
    expected = (teachers.soft_targets(x, 2.0) + teachers.soft_targets(mirrored, 2.0)) / 2
    assert torch.allclose(teachers.soft_targets(x, 2.0, flip=True), expected, atol=1e-5)
    symmetric = teachers.normalization.apply(torch.cat([faces[:, :, :24], faces[:, :, :24].flip(-1)], dim=2))
    assert torch.allclose(teachers.soft_targets(symmetric, 2.0, flip=True), teachers.soft_targets(symmetric, 2.0),
                          atol=1e-5)  # a face that is its own mirror image gains nothing


def test_the_teacher_as_its_own_student_at_temperature_1_without_hard_labels_stays_where_it_was(tmp_path, sample_faces):
    # The shipped model distils into a copy of itself: the soft targets are the student's own
    # answers, so the loss starts near zero (dropout and batch statistics in training mode are all
    # that differ) and the student has nothing to learn. SGD, whose steps scale with the gradient
    # (Adam's do not), shows it: PublicTest answers and accuracy stay the teacher's.
    shipped = load_model("default", device="cpu")
    config = resolve_config("smoke", overrides={
        "model": "fastnet", "model_options": shipped.config.model_options, "init": "default", "teachers": ["default"],
        "distill_temperature": 1.0, "hard_label_weight": 0.0, "optimizer": "sgd", "lr": 1e-2, "batch_size": 64,
        "epochs": 2})
    summary = fit(config, sample_faces, tmp_path, progress=False, log=lambda _: None)
    val = sample_faces.split("val")
    before, after = shipped.logits(val.images), load_model(tmp_path, "last").logits(val.images)
    accuracy = [float((logits.argmax(1) == val.labels).float().mean()) for logits in (before, after)]
    assert abs(accuracy[1] - accuracy[0]) <= 2 / len(val) + 1e-9, accuracy  # two faces of 70 at most
    assert (before.argmax(1) == after.argmax(1)).float().mean() >= 0.95
    assert all(row["train_loss"] < 0.15 for row in summary["history"])  # cross-entropy on the labels: ~0.95 here


def test_distill_writes_a_student_whose_card_names_its_teachers_and_their_time(tmp_path, sample_archive, capsys):
    out = tmp_path / "student"
    code = main(["distill", "default", "default-fast", "--student", "fastnet", "--preset", "smoke", "--crop", "40",
                 "--views", "2", "--data", str(sample_archive), "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    card = read_checkpoint(out / "best.pt")["distillation"]
    shipped = read_checkpoint(resolve_checkpoint("default"))
    # the whole time behind each teacher: default's epochs; default-fast's own three stages and its teacher's, once a stage
    teachers_seconds = training_seconds(shipped) + training_seconds(read_checkpoint(resolve_checkpoint("default-fast")))
    assert training_seconds(shipped) == pytest.approx(sum(row["seconds"] for row in shipped["history"]))
    assert [t["source"] for t in card["teachers"]] == ["default", "default-fast"]
    assert card["teachers"][0]["model"] == "fastnet" and card["teachers"][0]["epoch"] == 52
    assert card["teachers_train_seconds"] == pytest.approx(teachers_seconds)
    assert card["temperature"] == 4.0 and card["hard_label_weight"] == 0.5 and card["teacher_flip"] is False
    assert f"+ {teachers_seconds:.0f}s training the teachers" in printed
    assert json.loads((out / "metrics.json").read_text())["teachers_train_seconds"] == pytest.approx(teachers_seconds)
    student = read_checkpoint(out / "best.pt")
    assert student["normalization"] == shipped["normalization"]  # the student sees what its teachers see
    assert training_seconds(student) == pytest.approx(sum(r["seconds"] for r in student["history"]) + teachers_seconds)
    export_checkpoint(student, tmp_path / "exported.pt")
    assert torch.load(tmp_path / "exported.pt", weights_only=True)["distillation"] == card  # the card travels


def test_teachers_that_see_other_input_or_other_classes_are_refused_in_one_line(tmp_path, sample_archive, capsys):
    shipped = read_checkpoint(resolve_checkpoint("default"))
    rescaled = tmp_path / "rescaled.pt"
    save_checkpoint(rescaled, {**shipped, "normalization": {"kind": "rescale", "mean": 0.0, "std": 1.0}})
    reordered = tmp_path / "reordered.pt"
    torch.save({**shipped, "classes": ["happy", "angry", "disgust", "fear", "sad", "surprise", "neutral"]}, reordered)
    for teachers, message in (([ "default", str(rescaled)], f"teacher {rescaled} normalises its input as rescale, "
                                                           "teacher default as standardize (mean 0.5"),
                              (["default", str(reordered)], f"{reordered}: classes ['happy', 'angry'")):
        code = main(["distill", *teachers, "--student", "fastnet", "--preset", "smoke", "--data", str(sample_archive),
                     "--out", str(tmp_path / "refused"), "--quiet"])
        error = capsys.readouterr().err
        assert code == 2 and message in error and len(error.strip().splitlines()) == 1, error
    assert not (tmp_path / "refused").exists()  # checked before the run folder is made


@pytest.mark.parametrize("flags, side", [(["--crop", "40"], 40), (["--progressive-start", "32", "--progressive-epochs", "1"], 32)])
def test_a_teacher_that_cannot_take_the_students_views_is_refused_in_one_line(tmp_path, sample_archive, capsys, flags, side):
    shipped = read_checkpoint(resolve_checkpoint("default"))
    whole_faces_only = tmp_path / "cnn.pt"  # cnn's head is sized for 48 pixels
    save_checkpoint(whole_faces_only, {**shipped, "config": {**shipped["config"], "model": "cnn", "model_options": {}},
                                       "model": build_model("cnn").state_dict()})
    code = main(["distill", "default", str(whole_faces_only), "--student", "fastnet", "--preset", "smoke", *flags,
                 "--data", str(sample_archive), "--out", str(tmp_path / "refused"), "--quiet"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error, error
    assert f"teacher {whole_faces_only}: model 'cnn' takes only whole 48x48 faces, not {side}-pixel crops" in error
    assert not (tmp_path / "refused").exists()


def test_training_seconds_add_up_teachers_and_ensemble_members():
    single = {"history": [{"seconds": 2.0}, {"seconds": 3.0}]}
    taught = {"history": [{"seconds": 1.0}], "distillation": {"teachers_train_seconds": 5.0}}
    assert training_seconds(single) == 5.0 and training_seconds(taught) == 6.0
    assert training_seconds({"kind": "ensemble", "members": [single, taught]}) == 11.0
    assert training_seconds({"kind": "ensemble", "members": [single, {"history": []}]}) is None
    continued = {**taught, "init": {"source": "run", "train_seconds": 7.0}}  # fine-tuned or continued (--init)
    assert training_seconds(continued) == 13.0 and training_seconds({**single, "init": {"train_seconds": None}}) is None
    for damaged in ({**single, "init": "run"}, {**single, "distillation": 5}, {"history": ["row"]},
                    {"history": [{"seconds": "two"}]}, {**single, "init": {"train_seconds": [1]}}, {"kind": "ensemble"}):
        assert training_seconds(damaged) is None, damaged  # unrecorded, not a crash
    assert math.isclose(training_seconds(read_checkpoint(resolve_checkpoint("default"))), 175.33, abs_tol=0.01)


def test_a_missing_teacher_is_one_line(tmp_path, sample_archive, capsys):
    with pytest.raises(FerlabError, match="no such run folder or checkpoint"):
        load_teachers([str(tmp_path / "absent")], torch.device("cpu"))
    code = main(["distill", str(tmp_path / "absent"), "--student", "fastnet", "--preset", "smoke",
                 "--data", str(sample_archive), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2 and "absent: no such run folder or checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_teacher_given_twice_is_one_line(tmp_path, sample_archive, capsys):
    code = main(["distill", "default", "default", "--student", "fastnet", "--preset", "smoke",
                 "--data", str(sample_archive), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "ferlab: error: default: is default again; the teachers of a student must be distinct models"
    assert not (tmp_path / "out").exists()


def test_a_teacher_copied_under_another_name_is_one_line(tmp_path, sample_archive, capsys):
    copy = tmp_path / "copy.pt"
    shutil.copyfile(ferlab.checkpoint.shipped_model_path("default-fast"), copy)
    code = main(["distill", "default-fast", str(copy), "--student", "fastnet", "--preset", "smoke",
                 "--data", str(sample_archive), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"ferlab: error: {copy}: is a copy of default-fast; the teachers of a student must be distinct models"
    assert not (tmp_path / "out").exists()
