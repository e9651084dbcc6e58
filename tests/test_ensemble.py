"""Ensembles as one model (issue 12, item 4): one file that every command and ferlab.load accept."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import ferlab
from ferlab.checkpoint import load_model, read_checkpoint, save_checkpoint
from ferlab.cli import main
from ferlab.errors import FerlabError


@pytest.fixture(scope="module")
def ensemble_file(tmp_path_factory, sample_archive):
    root = tmp_path_factory.mktemp("ensemble")
    runs = []
    for seed in (0, 1):
        runs.append(root / f"run{seed}")
        assert main(["train", "--preset", "smoke", "--epochs", "1", "--seed", str(seed), "--data", str(sample_archive),
                     "--out", str(runs[-1]), "--quiet"]) == 0
    path = root / "ensemble.pt"
    assert main(["ensemble", *map(str, runs), "--weights", "fit", "--out", str(root / "evaluation"),
                 "-o", str(path)]) == 0
    return path, runs, json.loads((root / "evaluation" / "metrics.json").read_text())


def test_the_ensemble_file_evaluates_as_the_ensemble_did(ensemble_file, tmp_path, capsys):
    path, _, summary = ensemble_file
    assert main(["evaluate", str(path), "--split", "both", "--out", str(tmp_path)]) == 0
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    assert evaluated["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert evaluated["val_accuracy"] == pytest.approx(summary["val_accuracy"])


def test_the_api_photo_and_export_take_the_ensemble(ensemble_file, tmp_path, sample_faces):
    path, runs, summary = ensemble_file
    model = ferlab.load(path)
    faces = sample_faces.split("test").images[:8]
    probabilities = model.predict(faces).probabilities
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
    members = [load_model(run).probabilities(faces) for run in runs]
    weights = summary["weights"]
    expected = sum(w * p for w, p in zip(weights, members)).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    assert main(["photo", "--demo", "--model", str(path), "-o", str(tmp_path / "photos")]) == 0
    onnxruntime = pytest.importorskip("onnxruntime")
    assert main(["export", str(path), "-o", str(tmp_path / "ensemble.onnx")]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "ensemble.onnx"), providers=["CPUExecutionProvider"])
    _, onnx_probabilities = session.run(None, {"faces": faces.numpy()})
    reference = (model.loaded.model.float()(faces[:, None].float())).softmax(1).detach().numpy()
    np.testing.assert_allclose(onnx_probabilities, reference, atol=1e-4)


def test_explanations_of_an_ensemble_are_defined_or_refused_in_one_line(ensemble_file, tmp_path, capsys):
    path, _, _ = ensemble_file
    maps = ferlab.load(path).explain(np.zeros((48, 48), np.uint8) + 100, method="saliency")
    assert maps.shape == (1, 48, 48)
    figure = tmp_path / "gradcam.png"  # a file: explain -o names the PNG, checked before the work
    assert main(["explain", str(path), "--method", "gradcam", "--index", "0", "-o", str(figure)]) == 2
    err = capsys.readouterr().err.strip()
    assert "an ensemble has no single convolutional layer" in err and "\n" not in err and not figure.exists()


def test_photos_lay_occlusion_over_an_ensembles_faces_where_grad_cam_does_not_apply(ensemble_file):
    """An ensemble has no single conv layer (nor has a dnn): its faces in photos are explained by
    occlusion of the averaged output, where a single model's get Grad-CAM."""
    from ferlab.explain.postprocess import normalize, relu

    path, _, _ = ensemble_file
    model, photo = ferlab.load(path), ferlab.demo_photos()[1]
    assert model.loaded.overlay_method == "occlusion" and ferlab.load("default").loaded.overlay_method == "gradcam"
    [face] = model.detect(photo, explain=True)
    expected = normalize(relu(torch.from_numpy(model.explain(face.crop, method="occlusion"))[:, None]))[0, 0]
    np.testing.assert_allclose(face.cam, expected.numpy(), atol=1e-6)
    assert face.cam.max() == pytest.approx(1.0)


def test_an_ensemble_with_another_class_order_is_refused_by_name(ensemble_file, tmp_path):
    path, _, _ = ensemble_file
    payload = torch.load(path, weights_only=True)
    payload["members"][1]["classes"] = list(reversed(payload["members"][1]["classes"]))
    damaged = tmp_path / "damaged.pt"
    save_checkpoint(damaged, {k: v for k, v in payload.items() if k not in ("format", "version", "classes")})
    with pytest.raises(FerlabError, match=r"damaged.pt: member 2: classes .* differ"):
        read_checkpoint(damaged)


def test_a_member_given_twice_by_any_path_is_one_line(ensemble_file, tmp_path, capsys):
    """``default default`` was keyed into one member and written with two weights ("ensemble of 2")."""
    _, runs, _ = ensemble_file
    (tmp_path / "link").symlink_to(runs[0])
    for given in (["default", "default"], [str(runs[0]), f"{runs[0]}/"], [str(runs[0]), str(runs[1]), str(tmp_path / "link")],
                  ["default", str(ferlab.checkpoint.shipped_model_path("default"))]):
        code = main(["ensemble", *given, "-o", str(tmp_path / "twice.pt"), "--out", str(tmp_path / "evaluation")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err == f"ferlab: error: {given[-1]}: is {given[0]} again; the members of an ensemble must be distinct models"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link"]


def test_a_copy_of_a_member_under_another_name_is_one_line(ensemble_file, tmp_path, capsys):
    """``cp runs/a/best.pt copy.pt`` made a second member of the same weights without a word."""
    _, runs, _ = ensemble_file
    copy = tmp_path / "copy.pt"
    shutil.copyfile(runs[1] / "best.pt", copy)
    code = main(["ensemble", str(runs[0]), str(runs[1]), str(copy), "-o", str(tmp_path / "twice.pt"), "--out", str(tmp_path / "evaluation")])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"ferlab: error: {copy}: is a copy of {runs[1]}; the members of an ensemble must be distinct models"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.pt"]
