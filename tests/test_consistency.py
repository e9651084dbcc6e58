"""One face, one answer (issue 12, items 2 and 3): the API, `predict` on a face crop, `photo` in
crop mode, `serve` and `evaluate` all take the model's one inference path."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

import ferlab
from ferlab.checkpoint import load_model
from ferlab.cli import main
from ferlab.labels import EMOTIONS
from ferlab.runs import evaluate_split
from ferlab.serve.app import create_app


@pytest.fixture(scope="module")
def face_files(tmp_path_factory, sample_faces):
    """Three real PrivateTest faces as lossless 48x48 PNG crops."""
    folder = tmp_path_factory.mktemp("crops")
    test = sample_faces.split("test")
    paths = []
    for i in (0, 25, 50):
        paths.append(folder / f"face{i}.png")
        Image.fromarray(test.images[i].numpy()).save(paths[-1])
    return paths, test.select(torch.tensor([0, 25, 50]))


def test_one_face_gets_one_answer_from_every_command(tmp_path, face_files, capsys):
    paths, subset = face_files
    api = ferlab.load("default").predict(paths).probabilities

    submission = tmp_path / "submission.csv"
    assert main(["predict", "default", *map(str, paths), "--proba", "-o", str(submission)]) == 0
    rows = list(csv.DictReader(open(submission)))
    predicted = np.array([[float(row[name]) for name in EMOTIONS] for row in rows])

    assert main(["photo", *map(str, paths), "-o", str(tmp_path / "photos")]) == 0  # auto: each crop is one face
    records = json.loads((tmp_path / "photos" / "results.json").read_text())["photos"]
    assert all(r["faces"][0]["found_by"] == "whole image" for r in records)
    photographed = np.array([[r["faces"][0]["probabilities"][name] for name in EMOTIONS] for r in records])

    client = TestClient(create_app(load_model("default")))
    served = []
    for path in paths:
        answer = client.post("/api/predict", files={"file": (path.name, path.read_bytes())}).json()
        served.append([answer["faces"][0]["probabilities"][name] for name in EMOTIONS])

    evaluated = evaluate_split(load_model("default"), subset, "test", tmp_path)["probabilities"].numpy()

    np.testing.assert_allclose(predicted, api, atol=1e-6)
    np.testing.assert_allclose(evaluated, api, atol=1e-6)
    np.testing.assert_allclose(photographed, api, atol=1e-4)  # JSON rounds to 4 digits
    np.testing.assert_allclose(np.array(served), api, atol=1e-4)


def test_photo_modes_say_how_each_face_was_found(tmp_path, face_files):
    paths, _ = face_files
    astronaut = ferlab.demo_photos()[0]
    assert main(["photo", str(paths[0]), str(astronaut), "-o", str(tmp_path / "auto")]) == 0
    auto = json.loads((tmp_path / "auto" / "results.json").read_text())["photos"]
    assert [[f["found_by"] for f in r["faces"]] for r in auto] == [["whole image"], ["detector"]]
    assert main(["photo", str(paths[0]), "--mode", "detect", "-o", str(tmp_path / "detect")]) == 0
    assert json.loads((tmp_path / "detect" / "results.json").read_text())["photos"][0]["faces"] == []
    assert main(["photo", str(astronaut), "--mode", "crop", "-o", str(tmp_path / "crop")]) == 0
    [face] = json.loads((tmp_path / "crop" / "results.json").read_text())["photos"][0]["faces"]
    assert face["found_by"] == "whole image" and face["box"] == [0, 0, 512, 512]


def test_predict_on_crops_names_unreadable_files_and_labels_the_rest(tmp_path, face_files, capsys):
    paths, _ = face_files
    folder = tmp_path / "mixed"
    folder.mkdir()
    big = Image.open(paths[0]).resize((200, 180))  # any size: made gray 48x48
    big.convert("RGB").save(folder / "big.jpg")
    (folder / "notes.jpg").write_text("not an image")
    output = tmp_path / "labels.csv"
    code = main(["predict", "default", str(folder), str(paths[1]), "-o", str(output)])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.strip() == f"ferlab: error: {folder / 'notes.jpg'}: not an image (no image format Pillow knows)"
    rows = list(csv.reader(open(output)))
    assert rows[0] == ["id", "label"] and [r[0] for r in rows[1:]] == [str(folder / "big.jpg"), str(paths[1])]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", "default", str(empty), str(paths[1]), "-o", str(output)]) == 2  # not 0 rows without a word
    assert f"ferlab: error: {empty}: no photos in this folder" in capsys.readouterr().err
    assert [r[0] for r in list(csv.reader(open(output)))[1:]] == [str(paths[1])]


def test_nothing_readable_leaves_the_last_outputs_as_they_were(tmp_path, face_files, capsys):
    """A typo in the input must not replace yesterday's submission or photo summary with an empty
    one: with no face to write, predict and photo write nothing, name the output in one more line
    and exit 2."""
    paths, _ = face_files
    submission, photos = tmp_path / "submission.csv", tmp_path / "photos"
    assert main(["predict", "default", str(paths[0]), "-o", str(submission)]) == 0
    assert main(["photo", str(paths[0]), "-o", str(photos)]) == 0
    before = submission.read_bytes(), (photos / "results.json").read_bytes()
    capsys.readouterr()
    typo = tmp_path / "fcae0.png"
    assert main(["predict", "default", str(typo), "-o", str(submission)]) == 2
    assert main(["photo", str(typo), "-o", str(photos)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"ferlab: error: {typo}: cannot read (No such file or directory)",
        f"ferlab: error: {submission}: not written: no input could be read",
        f"ferlab: error: {typo}: cannot read (No such file or directory)",
        f"ferlab: error: {photos / 'results.json'}: not written: no input could be read"]
    assert (submission.read_bytes(), (photos / "results.json").read_bytes()) == before
    # data that holds no face of the asked split: said, not an empty file with exit code 0
    training_only = tmp_path / "training-only.csv"
    training_only.write_text("emotion,pixels,Usage\n3," + " ".join(["128"] * 2304) + ",Training\n")
    assert main(["predict", "default", str(training_only), "--split", "test", "-o", str(submission)]) == 2
    assert capsys.readouterr().err.strip() == \
        f"ferlab: error: {submission}: not written: the inputs hold no faces in the test split"
    assert submission.read_bytes() == before[0]
