"""``ferlab photo`` over many files (``ferlab.photo_batch``): outputs that never replace a file it
did not write, face crops, names a file system can hold."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from ferlab.checkpoint import load_model
from ferlab.cli import main
from ferlab.labels import EMOTIONS
from ferlab.photos import analyze, demo_photos

ASTRONAUT, GRACE_HOPPER = demo_photos()


# --- outputs never replace what ferlab photo did not write ------------------------------------------

def test_photo_refuses_to_replace_a_file_it_did_not_write(tmp_path, capsys):
    folder = tmp_path / "labelled"
    folder.mkdir()
    Image.open(GRACE_HOPPER).save(folder / "hopper.png")
    annotation = folder / "hopper.json"  # a LabelMe annotation beside its photo
    annotation.write_text('{"shapes": []}')
    assert main(["photo", str(folder), "-o", str(folder)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"ferlab: error: {annotation}: exists and is not an output of ferlab photo, which would replace it; "
        "choose another output folder (-o) or move the file")
    assert annotation.read_text() == '{"shapes": []}' and sorted(p.name for p in folder.iterdir()) == ["hopper.json", "hopper.png"]
    annotation.unlink()
    (folder / "results.json").write_text('{"accuracy": 0.7}')  # another tool's results
    assert main(["photo", str(folder), "-o", str(folder)]) == 2
    assert f"{folder / 'results.json'}: exists and is not an output" in capsys.readouterr().err


def test_photo_refuses_to_replace_one_of_its_inputs(tmp_path, capsys):
    Image.open(GRACE_HOPPER).save(tmp_path / "hopper.png")
    Image.open(GRACE_HOPPER).save(tmp_path / "hopper-annotated.png")  # the user's own photo of that name
    assert main(["photo", str(tmp_path / "hopper.png"), str(tmp_path / "hopper-annotated.png"), "-o", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"ferlab: error: {tmp_path / 'hopper-annotated.png'}: is one of the photos to read and would be replaced "
        "by an output; choose another output folder (-o)")


def test_photo_run_again_into_its_photos_folder_replaces_only_its_own_outputs(tmp_path, capsys):
    Image.open(GRACE_HOPPER).save(tmp_path / "hopper.png")
    for _ in range(2):
        assert main(["photo", str(tmp_path), "-o", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert f"{tmp_path}: passed over 2 file(s) that are not photos (hopper.json, results.json) and 1 earlier " \
           "output(s) of ferlab photo (hopper-annotated.png)" in err  # the second run reads the photo, not its copy
    assert Image.open(tmp_path / "hopper-annotated.png").info["Software"] == "ferlab photo"
    results = json.loads((tmp_path / "results.json").read_text())
    assert [p["image"] for p in results["photos"]] == [str(tmp_path / "hopper.png")]
    Image.open(GRACE_HOPPER).save(tmp_path / "hopper-annotated.png")  # unmarked, as earlier versions wrote them
    assert main(["photo", str(tmp_path / "hopper.png"), "-o", str(tmp_path)]) == 0  # results.json lists it as ours


def test_photo_crops_are_the_faces_the_model_saw_and_predict_reads_them_back(tmp_path, capsys):
    folder, out = tmp_path / "photos", tmp_path / "out"
    folder.mkdir()
    Image.open(GRACE_HOPPER).save(folder / "hopper.png")
    Image.open(ASTRONAUT).save(folder / "astronaut.png")
    assert main(["photo", str(folder), "--crops", "-o", str(out)]) == 0
    record = json.loads((out / "hopper.json").read_text())
    [face] = record["faces"]
    crop = np.asarray(Image.open(out / face["crop"]))
    assert face["crop"] == "hopper-face1.png" and "hopper-face1.png" in record["outputs"]
    expected = analyze(load_model("default"), np.asarray(Image.open(folder / "hopper.png").convert("RGB")))[0]
    assert crop.shape == (48, 48) and np.array_equal(crop, expected.crop)  # exactly what the model saw
    capsys.readouterr()
    assert main(["predict", "default", str(out / "hopper-face1.png"), str(out / "astronaut-face1.png"), "--proba",
                 "-o", str(tmp_path / "labels.csv")]) == 0
    rows = [row.split(",") for row in (tmp_path / "labels.csv").read_text().splitlines()[1:]]
    astronaut = json.loads((out / "astronaut.json").read_text())["faces"][0]
    assert [EMOTIONS[int(row[1])] for row in rows] == [face["label"], astronaut["label"]]  # Kaggle's class indices
    assert np.allclose([float(p) for p in rows[0][2:]], list(face["probabilities"].values()), atol=1e-3)
    # a second run that finds fewer faces leaves no crop of the first behind; a crop not ours stops it
    (out / "hopper-face2.png").write_bytes((out / "hopper-face1.png").read_bytes())  # as a run finding two faces left
    assert main(["photo", str(folder / "hopper.png"), "--crops", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.glob("hopper-face*")) == ["hopper-face1.png"]
    Image.fromarray(crop).save(out / "hopper-face7.png")  # the user's own file of that name, unmarked
    assert main(["photo", str(folder / "hopper.png"), "--crops", "-o", str(out)]) == 2
    assert f"{out / 'hopper-face7.png'}: exists and is not an output of ferlab photo" in capsys.readouterr().err


def test_a_photo_of_a_very_long_name_gets_outputs_a_file_system_can_hold(tmp_path, capsys):
    long = tmp_path / ("h" * 245 + ".png")  # 249 bytes: its name + "-annotated.png" would be 263
    Image.open(GRACE_HOPPER).save(long)
    assert main(["photo", str(long), "--crops", "-o", str(tmp_path / "out")]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    stem = names[0].split("-annotated")[0]
    assert stem.startswith("h" * 150) and "~" in stem and len(stem.encode()) == 200
    assert names == [f"{stem}-annotated.png", f"{stem}-face1.png", f"{stem}.json", "results.json"]


def test_a_smallest_face_over_the_photo_says_why_none_was_found(tmp_path, capsys):
    """``--min-face 1000`` on smaller photos gave "no face found" and nothing said why."""
    assert main(["photo", str(ASTRONAUT), "-o", str(tmp_path / "out"), "--min-face", "1000"]) == 0
    width, height = Image.open(ASTRONAUT).size
    why = f"--min-face 1000 px is over this {width}x{height} picture's shorter side"
    assert f"0 faces: no face found ({why})" in capsys.readouterr().out
    record = json.loads((tmp_path / "out" / f"{ASTRONAUT.stem}.json").read_text())
    assert record["faces"] == [] and record["note"] == why
    assert main(["photo", str(ASTRONAUT), "-o", str(tmp_path / "found"), "--min-face", str(min(width, height))]) == 0
    assert json.loads((tmp_path / "found" / f"{ASTRONAUT.stem}.json").read_text())["note"] is None



def test_a_batch_stopped_with_ctrl_c_keeps_the_summary_of_the_photos_done(tmp_path, capsys, monkeypatch):
    """Ctrl-C at photo 900 of 1,000 left each photo's own files but no results.json of the 899."""
    import ferlab.photo_batch

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a", "b", "c"):
        Image.open(GRACE_HOPPER).save(folder / f"{name}.png")
    calls = []

    def analyze_until_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return analyze(*args, **kwargs)

    monkeypatch.setattr(ferlab.photo_batch, "analyze", analyze_until_the_third)
    out = tmp_path / "out"
    assert main(["photo", str(folder), "-o", str(out)]) == 130
    summary = json.loads((out / "results.json").read_text())
    assert summary["complete"] is False and [p["image"] for p in summary["photos"]] == [str(folder / "a.png"), str(folder / "b.png")]
    monkeypatch.setattr(ferlab.photo_batch, "analyze", analyze)
    assert main(["photo", str(folder), "-o", str(out)]) == 0  # run again: its own summary is replaced, complete
    summary = json.loads((out / "results.json").read_text())
    assert summary["complete"] is True and len(summary["photos"]) == 3
