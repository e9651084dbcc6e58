"""Fine-tuning (issue 12, item 7): ``ferlab train --init MODEL --data my_faces/`` starts from a
model's weights and normalisation, on labelled ``<class>/*.jpg`` faces of any size."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from ferlab.checkpoint import load_model, read_checkpoint, resolve_checkpoint
from ferlab.cli import main
from ferlab.distill import training_seconds
from ferlab.labels import EMOTIONS


def test_fine_tuning_the_shipped_model_on_the_sample(tmp_path, sample_faces, capsys):
    faces = tmp_path / "my_faces"
    train = sample_faces.split("train")
    for i in range(0, len(train), 4):  # 70 faces, saved as 64x64 RGB JPEGs: any size and colour is converted
        folder = faces / EMOTIONS[int(train.labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        face = Image.fromarray(train.images[i].numpy()).resize((64, 64), Image.Resampling.BILINEAR).convert("RGB")
        face.save(folder / f"face{i}.jpg", quality=95)
    run = tmp_path / "run"
    code = main(["train", "--init", "default", "--data", str(faces), "--epochs", "2", "--out", str(run), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "fine-tuning default (fastnet)" in out
    for name in ("config.yaml", "history.csv", "best.pt", "last.pt", "metrics.json", "eval-val.json"):
        assert (run / name).exists(), name
    shipped, tuned = load_model("default"), load_model(run, "last")
    assert tuned.config.init == "default" and tuned.config.lr == 3e-4  # the finetune preset
    assert tuned.normalization == shipped.normalization  # the weights' own input statistics, not the new faces'
    changed = [k for k, v in tuned.model.state_dict().items()
               if v.is_floating_point() and not torch.allclose(v, shipped.model.state_dict()[k].float())]
    assert len(changed) > 10  # the weights moved from the shipped ones ...
    first = next(iter(shipped.model.state_dict()))
    difference = (tuned.model.state_dict()[first] - shipped.model.state_dict()[first].float()).abs().max()
    assert 0 < float(difference) < 0.1  # ... by a fine-tuning step, not a fresh start
    assert read_checkpoint(run / "last.pt")["data"]["resize"] is True
    shipped_seconds = training_seconds(read_checkpoint(resolve_checkpoint("default")))
    tuned_checkpoint = read_checkpoint(run / "last.pt")
    assert tuned_checkpoint["init"] == {"source": "default", "train_seconds": shipped_seconds}
    own = sum(row["seconds"] for row in tuned_checkpoint["history"])
    assert training_seconds(tuned_checkpoint) == pytest.approx(own + shipped_seconds)  # the starting weights' time counts
    assert f"(+ {shipped_seconds:.0f}s training the starting weights)" in out


def test_init_refuses_another_architecture(tmp_path, sample_archive, capsys):
    code = main(["train", "--init", "default", "--model", "cnn", "--data", str(sample_archive), "--out", str(tmp_path / "r")])
    assert code == 2 and "its architecture cannot change" in capsys.readouterr().err


def test_init_accepts_model_options_that_restate_its_own_and_names_one_that_differs(tmp_path, sample_archive, capsys):
    # default-fast's options, given again as a student's flags (benchmarks/gpu_session.py continue)
    restated = ["--model-option", "stem=false", "--model-option", "pool_first=true"]
    code = main(["train", "--init", "default-fast", *restated, "--epochs", "1", "--batch-size", "64",
                 "--data", str(sample_archive), "--out", str(tmp_path / "restated"), "--quiet"])
    assert code == 0 and (tmp_path / "restated" / "best.pt").exists(), capsys.readouterr().err
    code = main(["train", "--init", "default-fast", "--model-option", "widths=[16, 32, 64, 128]",
                 "--data", str(sample_archive), "--out", str(tmp_path / "changed"), "--quiet"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error and "its architecture cannot change (asked: {'widths': [16, 32, 64, 128]})" in error
    assert not (tmp_path / "changed").exists()


def test_a_resumed_fine_tuning_keeps_the_starting_weights_record(tmp_path, sample_faces):
    from ferlab.config import resolve_config
    from ferlab.training import fit

    start = tmp_path / "start"
    start.mkdir()
    fit(resolve_config("smoke", overrides={"epochs": 1}), sample_faces, start, progress=False, log=lambda _: None)
    started = training_seconds(read_checkpoint(start / "last.pt"))
    config = resolve_config("smoke", overrides={"epochs": 2, "init": str(start)})
    run = tmp_path / "run"
    run.mkdir()
    first = fit(config, sample_faces, run, progress=False, stop_after=1, log=lambda _: None)
    assert first["init_train_seconds"] == started
    resumed = fit(config, sample_faces, run, resume=True, progress=False, log=lambda _: None)
    assert resumed["init_train_seconds"] == started and resumed["epochs"] == 2
    assert read_checkpoint(run / "last.pt")["init"] == {"source": str(start), "train_seconds": started}


def test_starting_weights_of_another_architecture_are_refused_before_a_run_folder_exists(tmp_path, sample_archive, capsys):
    # the smoke preset's widths merge into the lean student's options: not the architecture of default-fast
    code = main(["distill", "default", "--student", "fastnet", "--preset", "smoke", "--init", "default-fast", "--epochs", "1",
                 "--data", str(sample_archive), "--out", str(tmp_path / "refused"), "--quiet"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error and "--init default-fast: its architecture (fastnet" in error, error
    assert not (tmp_path / "refused").exists()
