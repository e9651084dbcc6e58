"""The command line: every user error is one line on stderr and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ferlab.cli import main
from ferlab.errors import FerlabError
from ferlab.photos import demo_photos


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_models_lists_every_model_with_its_size(capsys):
    code, out, _ = run(["models"], capsys)
    assert code == 0
    assert "cnn" in out and "6,721,863" in out and "resnet18" in out and "fastnet" in out
    lines = out.splitlines()
    description_column = lines[0].index("description")  # one column for every name, the longest too
    assert all(line[description_column - 2:description_column] == "  " and line[description_column] != " "
               for line in lines), out


def test_summary_prints_a_layer_table(capsys):
    code, out, _ = run(["summary", "dnn"], capsys)
    assert code == 0 and "Output Shape" in out and "Total params: 6,924,551" in out


def one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ferlab: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_missing_data_says_where_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["train", "--preset", "smoke"], capsys)
    one_line_error(code, err, "FER2013 not found", "--data PATH", "FERLAB_DATA")


def test_bad_csv_row_names_file_and_line(tmp_path, capsys):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n0,1 2 3,Training\n")
    code, _, err = run(["train", "--preset", "smoke", "--data", str(path), "--out", str(tmp_path / "r")], capsys)
    one_line_error(code, err, f"{path}:2:", "expected 2304 pixel values")


def test_skip_bad_rows_reports_the_count(tmp_path, capsys):
    good = " ".join(["9"] * 2304)
    rows = [f"{i % 7},{good},{'Training' if i < 14 else 'PublicTest'}" for i in range(21)] + ["3,1 2,Training"]
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    code, out, _ = run(["train", "--preset", "smoke", "--epochs", "1", "--data", str(path), "--out",
                        str(tmp_path / "r"), "--quiet", "--skip-bad-rows"], capsys)
    assert code == 0
    assert f"skipped 1 bad entries (--skip-bad-rows); first: {path}:23:" in out


def test_data_without_test_faces_trains_and_without_training_faces_leaves_no_run_folder(tmp_path, capsys):
    """The done line printed "PrivateTest nan"; test faces alone were refused after the run folder
    was made, which was left holding its config.yaml."""
    good = " ".join(["9"] * 2304)
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + "\n".join(f"{i % 7},{good},{'Training' if i < 14 else 'PublicTest'}"
                                                          for i in range(21)) + "\n")
    code, out, err = run(["train", "--preset", "smoke", "--epochs", "1", "--data", str(path), "--out", str(tmp_path / "r")], capsys)
    done = out.strip().splitlines()[-1]
    assert code == 0 and "PrivateTest (fer2013.csv) no faces in the data, " in done and "nan" not in done
    assert err == ""  # piped: the epoch's progress bar is not drawn into the log
    path.write_text("emotion,pixels,Usage\n" + "\n".join(f"{i % 7},{good},PrivateTest" for i in range(7)) + "\n")
    code, _, err = run(["train", "--preset", "smoke", "--data", str(path), "--out", str(tmp_path / "t")], capsys)
    one_line_error(code, err, f"{path}: need training and validation faces, got 0 and 0")
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("argv, fragments", [
    (["train", "--preset", "turbo"], ["invalid choice: 'turbo'"]),
    (["train", "--model", "vgg19"], ["unknown model 'vgg19'; available: cnn, dnn"]),
    (["train", "--epochs", "ten"], ["invalid int value"]),
    (["evaluate", "no/such/run"], ["no/such/run: no such run folder or checkpoint"]),
    (["evaluate", "DEFAULT"], ["DEFAULT: no such run folder or checkpoint; did you mean 'default'?"]),
    (["photo", "--demo", "--model", "default_fast"], ["default_fast: no such run folder or checkpoint; did you mean "
                                                      "'default-fast'?"]),
    (["train", "--model-option", "dropout"], ["--model-option 'dropout': expected KEY=VALUE"]),
    (["train", "--model-option", "widths=[1,"], ["--model-option 'widths=[1,': not valid YAML (expected the node content"]),
    (["train", "--model-option", "widths={a: 1, a: 2}"], ["not valid YAML (key 'a' given twice, first on line 1)"]),
])
def test_user_errors_exit_2_with_one_line(argv, fragments, capsys, sample_archive):
    code, _, err = run(argv + ["--data", str(sample_archive)] if argv[0] == "train" else argv, capsys)
    one_line_error(code, err, *fragments)


def test_unknown_config_key_is_one_line(tmp_path, capsys, sample_archive):
    config = tmp_path / "c.yaml"
    config.write_text("learning_rate: 0.1\n")
    code, _, err = run(["train", "--config", str(config), "--data", str(sample_archive)], capsys)
    one_line_error(code, err, f"{config}: unknown key 'learning_rate'")


def test_evaluate_and_predict_on_a_trained_run(tmp_path, capsys, sample_archive):
    run_dir = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--epochs", "1", "--data", str(sample_archive),
                 "--out", str(run_dir), "--quiet"]) == 0
    capsys.readouterr()
    code, out, _ = run(["evaluate", str(run_dir), "--split", "test", "--tta"], capsys)
    assert code == 0 and "PrivateTest (fer2013-sample.tar.gz) + flip TTA: accuracy" in out
    assert (run_dir / "eval-test-tta-flip.json").exists() and (run_dir / "confusion-test-tta-flip.png").exists()
    code, out, _ = run(["evaluate", str(run_dir), "--split", "test", "--tta", "flip-zoom"], capsys)
    assert code == 0 and "PrivateTest (fer2013-sample.tar.gz) + flip-zoom TTA: accuracy" in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"test_tta_flip_accuracy", "test_tta_flip-zoom_accuracy"} <= set(metrics)

    # A course-style test.csv built from sample faces: unlabelled rows with ids.
    from ferlab.data import load_faces
    faces = load_faces(sample_archive).split("test")
    test_csv = tmp_path / "test.csv"
    test_csv.write_text("id,feature\n" + "".join(
        f"{i},{' '.join(map(str, face.flatten().tolist()))}\n" for i, face in enumerate(faces.images[:5])))
    submission = tmp_path / "submission.csv"
    code, out, _ = run(["predict", str(run_dir), str(test_csv), "-o", str(submission)], capsys)
    assert code == 0
    lines = submission.read_text().splitlines()
    assert lines[0] == "id,label" and [line.split(",")[0] for line in lines[1:]] == ["0", "1", "2", "3", "4"]
    assert all(0 <= int(line.split(",")[1]) <= 6 for line in lines[1:])


def test_photos_given_as_face_crops_are_named_in_one_note(tmp_path, capsys):
    """A group photo given to predict (or explain --image) gave one label of its squeezed pixels without a word."""
    wide = tmp_path / "wide.png"
    Image.fromarray(np.full((400, 640), 128, np.uint8)).save(wide)
    crop = tmp_path / "crop.png"
    Image.fromarray(np.full((60, 52), 128, np.uint8)).save(crop)  # a detector's box, a little off square
    code, out, err = run(["predict", "default-fast", str(wide), str(crop), str(wide), "-o", str(tmp_path / "s.csv")], capsys)
    assert code == 0 and out.strip() == f"wrote 3 predictions to {tmp_path / 's.csv'}"
    assert err.strip() == (f"ferlab: note: 2 image(s) not shaped as a face crop, each stretched to 48x48 as one face "
                           f"({wide} 640x400, {wide} 640x400); ferlab photo finds the faces in photos")
    code, _, err = run(["explain", "default-fast", "--image", str(wide), "-o", str(tmp_path / "x.png")], capsys)
    assert code == 0 and f"ferlab: note: 1 image(s) not shaped as a face crop, each stretched to 48x48 as one face ({wide} 640x400)" in err
    code, _, err = run(["explain", "default-fast", "--image", str(tmp_path / "absent.png"), "-o", str(tmp_path / "y.png")], capsys)
    one_line_error(code, err, "absent.png: cannot read")


def test_explain_names_its_figure_for_a_format_before_the_work(tmp_path, capsys, monkeypatch):
    """`explain -o notes.txt` failed after all of LIME's work; `-o out` (a folder, meant) became a
    PNG named `out`."""
    from ferlab.checkpoint import LoadedModel

    monkeypatch.setattr(LoadedModel, "explain", lambda *a, **k: pytest.fail("explained before the name was checked"))
    face = tmp_path / "face.png"
    Image.fromarray(np.full((48, 48), 128, np.uint8)).save(face)
    for name in ("out", "notes.txt"):
        code, _, err = run(["explain", "default-fast", "--method", "lime", "--image", str(face), "-o", str(tmp_path / name)], capsys)
        one_line_error(code, err, f"{tmp_path / name}: a figure is written here; name it .png, .jpg, .svg or .pdf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png"]


def test_a_split_of_face_images_is_one_line(tmp_path, capsys, sample_archive):
    """--split val of face image files was passed over without a word: they belong to no split."""
    face = tmp_path / "face.png"
    Image.fromarray(np.full((48, 48), 128, np.uint8)).save(face)
    code, _, err = run(["predict", "default-fast", str(face), "--split", "val", "-o", str(tmp_path / "s.csv")], capsys)
    one_line_error(code, err, "--split val: the inputs are face images, which belong to no split")
    assert not (tmp_path / "s.csv").exists()
    code, out, _ = run(["predict", "default-fast", str(face), str(sample_archive), "--split", "val", "-o", str(tmp_path / "s.csv")], capsys)
    assert code == 0 and "wrote 71 predictions" in out  # the image and the source's 70 PublicTest faces


def test_ensemble_of_a_run_and_its_copy_matches_the_run(tmp_path, capsys, sample_archive):
    """The combination of two copies of one model is that model (the command refuses a copy, the
    library combines what it is given)."""
    import shutil

    from ferlab.checkpoint import load_model
    from ferlab.data import load_faces
    from ferlab.ensemble import evaluate_ensemble

    run_dir = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--epochs", "1", "--data", str(sample_archive),
                 "--out", str(run_dir), "--quiet"]) == 0
    single = json.loads((run_dir / "metrics.json").read_text())
    out, copy = tmp_path / "ensemble", shutil.copy(run_dir / "best.pt", tmp_path / "copy.pt")
    code, _, err = run(["ensemble", str(run_dir), str(copy), "--weights", "fit", "--out", str(out)], capsys)
    one_line_error(code, err, f"{copy}: is a copy of {run_dir}")
    members = {str(run_dir): load_model(run_dir), str(copy): load_model(copy)}
    evaluate_ensemble(members, load_faces(sample_archive), out, fit=True)
    combined = json.loads((out / "metrics.json").read_text())
    assert combined["test_accuracy"] == pytest.approx(single["test_accuracy"])
    assert (out / "confusion-test.png").exists() and len(combined["weights"]) == 2
    assert combined["data"] == str(sample_archive)  # every metrics file names its data and splits
    assert {e["split_name"] for e in combined["evaluations"].values()} == {"PublicTest (fer2013-sample.tar.gz)",
                                                                          "PrivateTest (fer2013-sample.tar.gz)"}


def test_a_command_failing_on_its_input_leaves_no_empty_output_folder(tmp_path, capsys, monkeypatch):
    """A typo made runs/eval-default, runs/explain-default (each holding only the file that
    claimed it), photo-results or a/b/c and left them; folders that were there stay."""
    monkeypatch.chdir(tmp_path)
    missing = str(tmp_path / "nothing.csv")
    for argv in (["evaluate", "default", "--data", missing], ["report", "default", "--data", missing],
                 ["explain", "default", "--image", "nothing.png"], ["photo", "nothing.jpg"],
                 ["photo", "nothing.jpg", "-o", "a/b/c"], ["video", "nothing.mp4", "-o", "d/e"],
                 ["train", "--preset", "smoke", "--data", missing], ["ensemble", "default", "default-fast", "--data", missing]):
        code, _, err = run(argv, capsys)
        assert code == 2 and "nothing" in err, argv
        assert list(tmp_path.iterdir()) == [], argv
    (tmp_path / "kept").mkdir()
    code, _, _ = run(["photo", "nothing.jpg", "-o", "kept"], capsys)
    assert code == 2 and [p.name for p in tmp_path.iterdir()] == ["kept"]


URL_SAID = "a URL; ferlab reads and writes local files and downloads nothing (it works offline): "


@pytest.mark.parametrize("argv, named", [
    (["evaluate", "https://example.com/model.pt"], "https://example.com/model.pt"),
    (["evaluate", "default", "--data", "https://example.com/fer2013.csv"], "https://example.com/fer2013.csv"),
    (["video", "https://youtu.be/abc"], "https://youtu.be/abc"),
    (["explain", "default", "--image", "http://example.com/face.png"], "http://example.com/face.png"),
    (["train", "--config", "https://example.com/my.yaml"], "https://example.com/my.yaml"),
    (["tune", "https://example.com/sweep.yaml"], "https://example.com/sweep.yaml"),
    (["photo", "--demo", "-o", "s3://bucket/out"], "-o s3://bucket/out"),
    (["predict", "default", "face.png", "-o", "https://example.com/submission.csv"], "-o https://example.com/submission.csv"),
    (["report", "default", "--out", "gs://bucket/report"], "--out gs://bucket/report"),
])
def test_a_url_is_one_line_saying_ferlab_works_on_local_files(argv, named, tmp_path, capsys, monkeypatch):
    """pathlib read "https://host/a.jpg" as "https:/host/a.jpg": "No such file or directory" naming
    a path nobody gave, and an output URL made a local folder "https:" (or "s3:")."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run(argv, capsys)
    remedy = "give a local path" if named.startswith("-") else "save the file and give its path"
    assert code == 2 and err == f"ferlab: error: {named}: {URL_SAID}{remedy}\n", err
    assert list(tmp_path.iterdir()) == []


def test_a_url_among_a_batchs_inputs_is_named_while_the_rest_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    astronaut = demo_photos()[0]
    code, out, err = run(["photo", str(astronaut), "https://example.com/b.jpg", "-o", "out", "--model", "default-fast"],
                         capsys)
    assert code == 2 and err == f"ferlab: error: https://example.com/b.jpg: {URL_SAID}save the file and give its path\n"
    assert "1 face: happy" in out and (tmp_path / "out" / "results.json").exists()


def test_the_api_refuses_urls_in_one_line(tmp_path):
    import ferlab

    model = ferlab.load("default-fast")
    calls = {"https://example.com/a.jpg": lambda: model.detect("https://example.com/a.jpg"),
             "http://example.com/b.png": lambda: model.predict([np.zeros((48, 48), np.uint8), "http://example.com/b.png"]),
             "model https://hf.co/m.pt": lambda: ferlab.load("https://hf.co/m.pt"),
             "output gs://bucket/out": lambda: model.video(tmp_path / "clip.mp4", "gs://bucket/out")}
    for named, call in calls.items():
        with pytest.raises(FerlabError) as error:
            call()
        assert str(error.value).startswith(f"{named}: {URL_SAID}"), str(error.value)


def test_predict_notes_face_files_read_in_part_the_first_three_named(tmp_path, capsys):
    """An animated face crop gives its first frame's label (as detect does), said in a note; a
    folder of many is three notes and a count, not a line each."""
    frames = [Image.new("L", (48, 48), gray) for gray in (30, 200)]
    for i in range(5):
        frames[0].save(tmp_path / f"crop{i}.gif", save_all=True, append_images=frames[1:], duration=100)
    code, out, err = run(["predict", "default-fast", str(tmp_path), "-o", str(tmp_path / "labels.csv")], capsys)
    first_frame = "first frame only: an animated or multi-page image (ferlab video reads every frame)"
    assert code == 0 and "wrote 5 predictions" in out
    assert err.splitlines() == [f"ferlab: note: {tmp_path / f'crop{i}.gif'}: {first_frame}" for i in range(3)] + [
        "ferlab: note: ... and 2 more image(s) with a note like these"]


def test_train_never_overwrites_a_run(tmp_path, capsys, sample_archive):
    run_dir = tmp_path / "run"
    argv = ["train", "--preset", "smoke", "--epochs", "1", "--data", str(sample_archive), "--out", str(run_dir), "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    code, _, err = run(argv, capsys)
    one_line_error(code, err, "already holds a run; continue it with --resume")


def test_train_never_replaces_files_of_a_runs_names_that_a_run_did_not_write(tmp_path, capsys, sample_archive):
    """--out of a folder holding the user's curves.png or config.yaml replaced them without a word;
    a run stopped in its first epoch (its config.yaml alone) is started again, and other files stay."""
    for name in ("curves.png", "config.yaml", "eval-test.json"):
        out = tmp_path / name.replace(".", "-")
        out.mkdir()
        (out / name).write_text("mine\n")
        code, _, err = run(["train", "--preset", "smoke", "--epochs", "1", "--data", str(sample_archive), "--out", str(out)], capsys)
        assert code == 2 and err.strip() == f"ferlab: error: {out / name}: not written by a ferlab run, and would be replaced; choose another --out"
        assert [p.name for p in out.iterdir()] == [name] and (out / name).read_text() == "mine\n"
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "notes.txt").write_text("mine\n")
    (stopped / "config.yaml").write_text("# resolved training config; data: x\nmodel: fastnet\n")
    assert main(["train", "--preset", "smoke", "--epochs", "1", "--data", str(sample_archive), "--out", str(stopped), "--quiet"]) == 0
    assert (stopped / "last.pt").exists() and (stopped / "notes.txt").read_text() == "mine\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the warning is for CPU-only machines")
def test_cpu_warnings_name_gpu_presets_and_compilation_only_on_a_cpu():
    from ferlab.training import cpu_warnings
    from ferlab.config import resolve_config

    assert cpu_warnings("cpu", resolve_config("cpu"), "cpu") == []
    assert cpu_warnings("best", resolve_config("best"), "cuda") == []
    assert cpu_warnings("best", resolve_config("best", overrides={"compile": True}), "cuda") == []
    best, compiled = cpu_warnings("best", resolve_config("best", overrides={"compile": True}), "cpu")
    assert best.startswith("preset best is sized for a GPU") and compiled.startswith("--compile made the training step slower")


def test_a_gpu_preset_on_the_cpu_warns_but_runs(tmp_path, capsys, sample_archive):
    argv = ["train", "--preset", "fast", "--epochs", "1", "--data", str(sample_archive), "--out", str(tmp_path / "run"),
            "--quiet", "--no-mixed-precision"]
    code, _, err = run(argv, capsys)
    assert code == 0
    assert "ferlab: warning: preset fast is sized for a GPU and will take hours on this CPU" in err


# --- issue 11: outputs, pipes, buffering, serve's port, methods that do not apply ---------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, sample_archive):
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--preset", "smoke", "--epochs", "1", "--data", str(sample_archive),
                 "--out", str(run_dir), "--quiet"]) == 0
    return run_dir


def test_unwritable_outputs_are_one_line_errors(tmp_path, capsys, trained_run, sample_archive):
    a_file, a_folder = tmp_path / "taken.txt", tmp_path / "folder"
    a_file.write_text("x")
    a_folder.mkdir()
    a_folder_pt = tmp_path / "looks-like-a-model.pt"
    a_folder_pt.mkdir()
    read_only = "/proc/ferlab-cannot-write-here"  # not even root can create files in /proc
    cases = [
        (["predict", str(trained_run), str(sample_archive), "-o", str(a_folder)], f"{a_folder}: is a folder"),
        (["export", str(trained_run), "-o", str(a_folder_pt)], f"{a_folder_pt}: is a folder"),
        (["export", str(trained_run), "-o", f"{read_only}/model.pt"], f"{read_only}: cannot write here"),
        (["photo", "--demo", "-o", str(a_file)], f"{a_file}: exists and is not a folder"),
        (["photo", "--demo", "-o", read_only], f"{read_only}: cannot write here"),
        (["evaluate", str(trained_run), "--out", str(a_file)], f"{a_file}: exists and is not a folder"),
        (["train", "--preset", "smoke", "--data", str(sample_archive), "--out", str(a_file)],
         f"{a_file}: exists and is not a folder"),
        (["train", "--preset", "smoke", "--data", str(sample_archive), "--runs", read_only], f"{read_only}: cannot write here"),
    ]
    for argv, message in cases:
        code, _, err = run(argv, capsys)
        one_line_error(code, err, message)


def test_evaluating_on_other_data_keeps_both_evaluations(tmp_path, capsys, trained_run, sample_archive):
    other = tmp_path / "fer2013.csv"
    from ferlab.data import load_faces

    faces = load_faces(sample_archive)
    usage = {0: "Training", 1: "PublicTest", 2: "PrivateTest"}
    other.write_text("emotion,pixels,Usage\n" + "".join(
        f"{int(label)},{' '.join(map(str, face.flatten().tolist()))},{usage[int(split)]}\n"
        for face, label, split in zip(faces.images[::3], faces.labels[::3], faces.splits[::3])))
    assert main(["evaluate", str(trained_run)]) == 0
    own = json.loads((trained_run / "eval-test.json").read_text())
    assert main(["evaluate", str(trained_run), "--data", str(other)]) == 0
    out = capsys.readouterr().out
    assert "PrivateTest (fer2013.csv): accuracy" in out
    assert json.loads((trained_run / "eval-test.json").read_text()) == own  # not overwritten
    [elsewhere] = trained_run.glob("eval-test-on-fer2013.csv-*.json")
    assert json.loads(elsewhere.read_text())["source"] == str(other)
    evaluations = json.loads((trained_run / "metrics.json").read_text())["evaluations"]
    assert {(e["data"], e["split"]) for e in evaluations.values()} >= {(str(sample_archive), "test"), (str(other), "test")}


def test_explain_image_over_the_pixel_limit_is_one_line(tmp_path, capsys, trained_run):
    from tests.hostile import announced_png

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(announced_png(20000, 10000))
    code, _, err = run(["explain", str(trained_run), "--method", "saliency", "--image", str(bomb)], capsys)
    one_line_error(code, err, f"{bomb}: image has 200 MP, above the limit of 40 MP")


def test_methods_that_do_not_apply_are_one_line_for_explain(tmp_path, capsys, sample_archive):
    run_dir = tmp_path / "dnn"
    assert main(["train", "--model", "dnn", "--epochs", "1", "--batch-size", "32", "--data", str(sample_archive),
                 "--out", str(run_dir), "--quiet"]) == 0
    capsys.readouterr()
    code, _, err = run(["explain", str(run_dir), "--method", "gradcam", "--index", "0"], capsys)
    one_line_error(code, err, "no convolutional layers")


def test_serve_port_errors_come_before_any_serving_line(capsys):
    import socket

    code, out, err = run(["serve", "--port", "99999"], capsys)
    assert code == 2 and "is not a TCP port" in err and out == ""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, out, err = run(["serve", "--port", str(taken.getsockname()[1])], capsys)
        one_line_error(code, err, "cannot serve on 127.0.0.1:")
        assert "serving" not in out
        # a bad option is found before the port is tried (this one is taken: a late check would name it)
        code, out, err = run(["serve", "--port", str(taken.getsockname()[1]), "--min-face", "-1"], capsys)
    one_line_error(code, err, "--min-face -1.0: expected pixels")
    assert "serving" not in out


def test_a_closed_pipe_and_a_redirected_stdout_behave(tmp_path):
    import subprocess
    import sys

    # `true` exits without reading, long before Python has started: every write meets a closed pipe.
    closed = subprocess.run(f"{sys.executable} -m ferlab.cli summary vgg | true; echo ${{PIPESTATUS[0]}}", shell=True,
                            executable="/bin/bash", capture_output=True, text=True, timeout=120)
    assert closed.stderr == "" and closed.stdout.strip() == "141"
    script = "import sys; from ferlab.cli import main; main(['models']); print(sys.stdout.line_buffering, file=sys.stderr)"
    with open(tmp_path / "log", "w") as log:  # a file, as in `ferlab train > log`
        redirected = subprocess.run([sys.executable, "-c", script], stdout=log, stderr=subprocess.PIPE, text=True, timeout=120)
    assert redirected.stderr.strip() == "True" and "fastnet" in (tmp_path / "log").read_text()


def test_help_and_version_answer_without_importing_pytorch():
    """Issue 12: --help in well under a second; measured in benchmarks/startup.py, checked here by
    what it imports (a timed unit test would be noise on these machines)."""
    import subprocess
    import sys

    script = ("import sys; from ferlab.cli import main; code = main(sys.argv[1:]); "
              "heavy = sorted(m for m in ('torch', 'captum', 'lime', 'sklearn', 'cv2') if m in sys.modules); "
              "print('HEAVY', heavy, code)")
    for argv in (["--help"], ["train", "--help"], ["explain", "--help"], ["--version"]):
        result = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "HEAVY [] 0" in result.stdout, (argv, result.stdout[-300:], result.stderr[-300:])
    version = subprocess.run([sys.executable, "-m", "ferlab", "--version"], capture_output=True, text=True, timeout=120)
    assert version.stdout.strip() == "ferlab 0.1.0"


def test_an_unknown_argument_points_at_its_commands_help(capsys):
    """argparse pointed every unrecognized argument at 'ferlab --help', which lists no command's options."""
    code, _, err = run(["summary", "fastnet", "--model-option", "dropout=0.1"], capsys)
    assert code == 2 and err.strip() == "ferlab: error: unrecognized arguments: --model-option dropout=0.1 (see 'ferlab summary --help')"
    code, _, err = run(["predict", "default", "a.png", "--zzz"], capsys)
    assert code == 2 and err.strip() == "ferlab: error: unrecognized arguments: --zzz (see 'ferlab predict --help')"


def test_a_model_where_photo_video_or_serve_take_inputs_is_named(capsys, tmp_path):
    """`ferlab serve default-fast` was "unrecognized arguments: default-fast", `ferlab video
    default-fast clip.mp4` "unrecognized arguments: clip.mp4", and `ferlab photo RUN x.png` took the
    run folder's figures for photos: each takes its model as --model."""
    run_folder = tmp_path / "run"
    run_folder.mkdir()
    (run_folder / "best.pt").write_bytes(b"")
    for argv, model in ((["serve", "default-fast"], "default-fast"), (["video", "default-fast", "clip.mp4"], "default-fast"),
                        (["photo", str(run_folder), "x.png"], str(run_folder))):
        code, _, err = run(argv, capsys)
        assert code == 2 and err.strip() == (f"ferlab: error: {model} names a model: give it as --model {model} "
                                             f"(see 'ferlab {argv[0]} --help')")
    code, _, err = run(["train", "default", "--epochs", "0"], capsys)  # train's --model is an architecture
    assert code == 2 and "unrecognized arguments: default " in err


def test_registry_names_are_checked_when_the_command_runs(capsys):
    code, _, err = run(["summary", "transformer"], capsys)
    one_line_error(code, err, "unknown model 'transformer'; available: cnn, dnn")
    code, _, err = run(["explain", "default", "--method", "shap", "--index", "0"], capsys)
    one_line_error(code, err, "unknown explanation method 'shap'; available: saliency, gradcam")
    code, _, err = run(["train", "--model", "transformer"], capsys)
    one_line_error(code, err, "unknown model 'transformer'")


def test_the_detection_flags_state_the_libraries_defaults(capsys):
    """--help names the defaults without importing ferlab.faces (which imports PyTorch)."""
    from ferlab.faces import DEFAULT_DETECTOR, DETECTORS, MIN_FACE

    assert main(["photo", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"default {MIN_FACE}," in text and f"{DEFAULT_DETECTOR} (dlib; the default)" in text
    assert "{" + ",".join(DETECTORS) + "}" in text


def test_train_help_lists_every_preset_and_the_ensembles_of_presets(capsys):
    from ferlab.config import ENSEMBLES, PRESETS

    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert all(f"\n  {name} " in text for name in PRESETS)
    assert all(" + ".join(members) in text for members in ENSEMBLES.values()) and "families" in text


@pytest.mark.parametrize("argv", [["train"], ["distill", "default", "--student", "fastnet"], ["evaluate", "default"],
                                  ["experiment", "cnn-vs-dnn"], ["tune", "sweep.yaml"], ["report", "default"]])
def test_every_command_writing_a_folder_takes_dash_o_as_photo_and_video_do(argv):
    from ferlab.cli import build_parser

    assert build_parser().parse_args([*argv, "-o", "results"]).out == "results"


def test_a_folder_holds_one_models_figures(tmp_path, capsys, monkeypatch, trained_run, sample_archive):
    """`evaluate default -o ANOTHER_RUN` once replaced that run's eval-test.json and metrics.json
    test accuracy with the shipped model's; two checkpoint files both named best.pt shared
    runs/eval-best. Now --out naming another model's folder is refused, and the default folder is
    numbered instead of shared."""
    monkeypatch.chdir(tmp_path)
    before = {name: (trained_run / name).read_bytes() for name in ("metrics.json", "eval-test.json")}
    code, _, err = run(["evaluate", "default", "--data", str(sample_archive), "-o", str(trained_run)], capsys)
    one_line_error(code, err, f"{trained_run}: holds the figures of {trained_run.resolve()}, not of default")
    assert {name: (trained_run / name).read_bytes() for name in before} == before
    for argv in (["ensemble", "default", "default-fast", "--data", str(sample_archive), "--out", str(trained_run)],
                 ["photo", "--demo", "-o", str(trained_run)]):  # a photo named metrics.jpg would write metrics.json
        code, _, err = run(argv, capsys)
        one_line_error(code, err, f"{trained_run}: holds the figures of {trained_run.resolve()}")
    assert {name: (trained_run / name).read_bytes() for name in before} == before
    other = tmp_path / "other"
    other.mkdir()
    assert main(["export", "default-fast", "-o", str(other / "best.pt")]) == 0
    for checkpoint in (trained_run / "best.pt", other / "best.pt", trained_run / "best.pt"):
        assert main(["evaluate", str(checkpoint), "--data", str(sample_archive), "--split", "val"]) == 0
    capsys.readouterr()
    owners = {folder.name: (folder / "ferlab-model.txt").read_text().strip() for folder in (tmp_path / "runs").iterdir()}
    assert owners == {"eval-best": str(trained_run.resolve()), "eval-best-2": str(other.resolve())}
    def accuracy(folder):  # the shipped student names the sample as other data than its own: eval-val-on-...json
        [evaluation] = (tmp_path / "runs" / folder).glob("eval-val*.json")
        return json.loads(evaluation.read_text())["accuracy"]

    from ferlab.checkpoint import load_model
    from ferlab.data import load_faces
    from ferlab.runs import evaluate_split

    faces = load_faces(sample_archive)
    for folder, checkpoint in (("eval-best", trained_run / "best.pt"), ("eval-best-2", other / "best.pt")):
        (tmp_path / f"check-{folder}").mkdir()
        expected = evaluate_split(load_model(checkpoint), faces, "val", tmp_path / f"check-{folder}")["accuracy"]
        assert accuracy(folder) == expected
    assert accuracy("eval-best") != accuracy("eval-best-2")  # two models, told apart
    code, _, err = run(["evaluate", "default", "--data", str(sample_archive), "-o", "runs/eval-best-2"], capsys)
    one_line_error(code, err, "runs/eval-best-2: holds the figures of", "choose another output folder")
    for own in (["evaluate", str(trained_run)], ["evaluate", str(trained_run / "last.pt"), "-o", str(trained_run)]):
        assert main([*own, "--data", str(sample_archive), "--split", "val"]) == 0  # a run's own folder
    assert not (trained_run / "ferlab-model.txt").exists()
    assert main(["evaluate", "default", "--data", str(sample_archive), "--split", "val"]) == 0
    assert (tmp_path / "runs" / "eval-default" / "ferlab-model.txt").read_text() == "default\n"  # by name


def test_explain_passes_lime_and_occlusion_settings_to_the_methods_that_take_them(tmp_path, capsys, monkeypatch, sample_archive):
    from ferlab.checkpoint import LoadedModel

    asked, explain = [], LoadedModel.explain

    def spy(self, method, faces, target=None, **options):
        asked.append((method, options))
        return explain(self, method, faces, target, **options)

    monkeypatch.setattr(LoadedModel, "explain", spy)
    common = ["--index", "0", "--data", str(sample_archive), "-o", str(tmp_path / "x.png")]
    code, out, _ = run(["explain", "default", "--method", "all", "--samples", "20", "--window", "16", "--stride", "8",
                        "--layer", "last", *common], capsys)
    assert code == 0 and out.strip().endswith("x.png")
    taken = dict(asked)
    assert taken["lime"] == {"num_samples": 20} and taken["occlusion"] == {"window": 16, "stride": 8}
    assert taken["gradcam"] == {"layer": "last"} and taken["saliency"] == {}
    code, _, err = run(["explain", "default", "--method", "gradcam", "--samples", "20", *common], capsys)
    one_line_error(code, err, "--samples is an option of lime; gradcam takes no num_samples")
    code, _, err = run(["explain", "default", "--method", "occlusion", "--window", "5", *common], capsys)
    one_line_error(code, err, "occlusion: windows of 5 at a stride of 4 do not tile 48 pixels")
    code, _, err = run(["explain", "default", "--method", "lime", "--samples", "1", *common], capsys)
    one_line_error(code, err, "num_samples")


def test_explain_without_a_method_draws_what_photos_lay_over_faces(tmp_path, capsys, monkeypatch, sample_archive):
    """No --method: Grad-CAM for a checkpoint, occlusion for a model Grad-CAM cannot look into
    (``LoadedModel.overlay_method``); a flag of another method names the default it met."""
    from ferlab.checkpoint import LoadedModel

    asked, explain = [], LoadedModel.explain

    def spy(self, method, faces, target=None, **options):
        asked.append((method, options))
        return explain(self, method, faces, target, **options)

    monkeypatch.setattr(LoadedModel, "explain", spy)
    common = ["--index", "0", "--data", str(sample_archive)]
    code, out, _ = run(["explain", "default", *common, "-o", str(tmp_path / "x.png")], capsys)
    assert code == 0 and out.strip().endswith("x.png") and asked == [("gradcam", {})]
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(["explain", "default", *common, "--layer", "last"], capsys)
    assert code == 0 and asked[-1] == ("gradcam", {"layer": "last"})
    assert out.strip().endswith("explain-gradcam-test0.png") and list(tmp_path.rglob("explain-gradcam-test0.png"))
    code, _, err = run(["explain", "default", *common, "--window", "12", "-o", str(tmp_path / "y.png")], capsys)
    one_line_error(code, err, "--window is an option of occlusion; gradcam (the default --method) takes no window")
    # a fully connected model: no conv layer for Grad-CAM
    assert main(["train", "--model", "dnn", "--epochs", "1", "--data", str(sample_archive), "--batch-size", "64",
                 "--out", str(tmp_path / "dnn-run"), "--quiet"]) == 0
    [best] = (tmp_path / "dnn-run").rglob("best.pt")
    capsys.readouterr()
    code, _, _ = run(["explain", str(best), *common, "--window", "12", "-o", str(tmp_path / "z.png")], capsys)
    assert code == 0 and asked[-1] == ("occlusion", {"window": 12})


def test_explains_figures_of_faces_of_one_name_are_all_kept(tmp_path, capsys, monkeypatch, sample_faces):
    """a/face.png then b/face.png: two figures in the run folder; the same command again replaces
    its own; a file of the name that ferlab did not draw is never written over."""
    from PIL import Image

    from ferlab.outputs import figure_source

    monkeypatch.chdir(tmp_path)
    for folder, index in (("a", 0), ("b", 1)):
        (tmp_path / folder).mkdir()
        Image.fromarray(sample_faces.split("test").images[index].numpy()).save(tmp_path / folder / "face.png")
    written = []
    for folder in ("a", "b", "a"):
        code, out, _ = run(["explain", "default-fast", "--method", "saliency", "--image", f"{folder}/face.png"], capsys)
        assert code == 0
        written.append(Path(out.split("wrote ")[-1].strip()))
    first, second, again = written
    assert first.name == "explain-saliency-face.png" and second.name == "explain-saliency-face-2.png" and again == first
    assert {p.name for p in first.parent.glob("*.png")} == {first.name, second.name}
    assert str(tmp_path / "b" / "face.png") in figure_source(second) and str(tmp_path / "a" / "face.png") in figure_source(first)
    (first.parent / "explain-saliency-face-3.png").write_bytes(b"the user's notes")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "face.png").write_bytes((tmp_path / "a" / "face.png").read_bytes())
    code, out, _ = run(["explain", "default-fast", "--method", "saliency", "--image", "c/face.png"], capsys)
    assert code == 0 and out.strip().endswith("explain-saliency-face-4.png")
    assert (first.parent / "explain-saliency-face-3.png").read_bytes() == b"the user's notes"


def test_explain_to_a_named_file_writes_that_file_alone(tmp_path, capsys, monkeypatch, sample_archive):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(["explain", "default", "--method", "saliency", "--index", "0", "--data", str(sample_archive),
                        "-o", "face.png"], capsys)
    assert code == 0 and out.strip().endswith("wrote face.png")
    assert [p.name for p in tmp_path.iterdir()] == ["face.png"]  # no runs/explain-default beside it
    code, _, err = run(["explain", "default", "--method", "saliency", "--index", "0", "--data", str(sample_archive),
                        "-o", "/proc/ferlab-cannot-write-here/face.png"], capsys)
    one_line_error(code, err, "/proc/ferlab-cannot-write-here: cannot write here")


def test_explain_images_and_indexes_given_twice_are_all_kept():
    from ferlab.cli import build_parser

    parse = build_parser().parse_args  # argparse kept the last --image list alone: the first was dropped silently
    assert parse(["explain", "default", "--image", "a.png", "b.png", "--image", "c.png"]).image == ["a.png", "b.png", "c.png"]
    assert parse(["explain", "default", "--index", "3", "--index", "1", "2"]).index == [3, 1, 2]


def test_an_output_that_is_one_of_the_inputs_is_refused_before_any_work(tmp_path, capsys, trained_run, sample_archive):
    import shutil

    from ferlab.photos import demo_photos

    photo, checkpoint = tmp_path / "face.png", tmp_path / "model.pt"
    shutil.copy(demo_photos()[1], photo)
    shutil.copy(trained_run / "best.pt", checkpoint)
    (tmp_path / "alias.png").symlink_to(photo)  # another path to the same file
    before = {path: path.read_bytes() for path in (photo, checkpoint)}
    cases = [  # `predict x.png -o x.png` wrote a CSV over the photo; `export m.pt -o m.pt` its float16 copy over the weights
        (["predict", "default", str(photo), "-o", str(tmp_path / "alias.png")], photo),
        (["explain", "default", "--image", str(photo), "-o", str(photo)], photo),
        (["export", str(checkpoint), "-o", str(checkpoint)], checkpoint),
        (["ensemble", str(checkpoint), "default", "--data", str(sample_archive), "-o", str(checkpoint)], checkpoint),
    ]
    for argv, source in cases:
        code, _, err = run(argv, capsys)
        one_line_error(code, err, f": is also an input ({source}) and would be replaced; name another output")
    assert all(path.read_bytes() == data for path, data in before.items())


def test_an_output_of_another_kind_of_file_is_one_line(tmp_path, capsys, sample_archive):
    """predict -o keep.png wrote a CSV over an unrelated photo, ensemble -o and calibrate -o a checkpoint."""
    keep = tmp_path / "keep.png"
    Image.fromarray(np.full((48, 48), 128, np.uint8)).save(keep)
    before = keep.read_bytes()
    for argv, message in [
        (["predict", "default-fast", str(sample_archive), "-o", str(keep)], "predict writes a CSV (id,label); name the file *.csv"),
        (["ensemble", "default", "default-fast", "--data", str(sample_archive), "--out", str(tmp_path / "e"), "-o", str(keep)],
         "ensemble -o writes one checkpoint of its members; name the file *.pt"),
        (["calibrate", "default-fast", "--data", str(sample_archive), "-o", str(keep)], "calibrate writes a checkpoint; name the file *.pt"),
    ]:
        code, _, err = run(argv, capsys)
        assert code == 2 and err.strip() == f"ferlab: error: {keep}: {message}"
    assert keep.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]
    code, out, _ = run(["predict", "default-fast", str(keep), "-o", str(tmp_path / "labels.CSV")], capsys)
    assert code == 0 and (tmp_path / "labels.CSV").read_text().startswith("id,label")
