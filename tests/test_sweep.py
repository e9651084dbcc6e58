"""``ferlab tune`` on Ray Tune (issue 14, item 1), and without Ray as local processes (``--local``,
for a GPU machine that cannot install Ray): trials ranked on PublicTest only, each in its run
folder; bad sweep files and failing trials are one line each."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from ferlab.cli import main
from ferlab.errors import FerlabError
from ferlab.config import resolve_config
from ferlab.data import load_faces
from ferlab.sweep import grid_trials, read_sweep
from ferlab.training import fit

ray_only = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs Ray (ferlab[ray])")


def write(tmp_path, text: str):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


@ray_only
def test_a_grid_sweep_ranks_its_trials_on_publictest_and_keeps_their_run_folders(tmp_path, sample_archive, capsys):
    sweep = write(tmp_path, "preset: smoke\nepochs: 2\ngrid: {lr: [0.003, 0.00001]}\n")
    out = tmp_path / "out"
    assert main(["tune", str(sweep), "--data", str(sample_archive), "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert {r["label"] for r in rows} == {"lr=0.003", "lr=1e-05"}
    assert [r["publictest"] for r in rows] == sorted((r["publictest"] for r in rows), reverse=True)
    for row in rows:
        assert row["error"] is None and row["epochs"] == 2
        assert (Path(row["run"]) / "best.pt").exists() and Path(row["run"]).parent == (out / "trials").resolve()
    assert all("test" not in key or key == "publictest" for r in rows for key in r)  # PrivateTest never looked at
    table = (out / "table.md").read_text()
    assert "PrivateTest not evaluated" in table and "lr=0.003" in table
    assert "2 trials; best on PublicTest:" in capsys.readouterr().out


@ray_only
def test_a_failing_trial_is_listed_with_its_error_and_the_others_finish(tmp_path, sample_archive, capsys):
    # a starting model that is not there: that trial fails when it starts, the other runs.
    sweep = write(tmp_path, "preset: smoke\nepochs: 1\nvariants:\n  - {label: ok}\n  - {label: broken, init: /no/such/run}\n")
    out = tmp_path / "out"
    assert main(["tune", str(sweep), "--data", str(sample_archive), "--out", str(out)]) == 0
    rows = {r["label"]: r for r in json.loads((out / "results.json").read_text())}
    assert rows["ok"]["error"] is None and rows["ok"]["publictest"] is not None
    assert "/no/such/run: no such run folder or checkpoint" in rows["broken"]["error"]
    assert "1 failed" in capsys.readouterr().out
    assert "failed: " in (out / "table.md").read_text()


@pytest.mark.parametrize("text, message", [
    ("preset: smoke\ngrid: {lr: []}\n", "grid key 'lr' needs a non-empty list"),
    ("preset: smoke\ngrid: {learning_rate: [0.1]}\n", "unknown key 'learning_rate'"),
    ("preset: smoke\ngrid: {lr: [0.1]}\nworkers: 3\n", "unknown key 'workers'; a sweep has"),
    ("preset: smoke\n", "give exactly one of variants, grid or random (got none)"),
    ("preset: smoke\nrandom: {lr: {normal: [0, 1]}}\n", "random key 'lr': expected one of"),
    ("preset: nope\ngrid: {lr: [0.1]}\n", "unknown preset 'nope'"),
    ("preset: smoke\ngrid: {lr: [0.1, 0.0]}\n", "trial 'lr=0.0': lr must be a positive finite number"),
    ("preset: smoke\nvariants:\n  - {label: a, lr: fast}\n", "lr must be float"),
    # Each of these was a traceback, ran on to Ray, or (the grid) built every combination first.
    ("preset: smoke\nrandom: {lr: {uniform: [0.1, 0.2]}}\nsamples: many\n", "samples must be a whole number from 1 to 10,000, got 'many'"),
    ("preset: smoke\nrandom: {lr: {uniform: [0.1, 0.2]}}\nsamples: [3]\n", "samples must be a whole number from 1 to 10,000, got [3]"),
    ("preset: smoke\nrandom: {lr: {uniform: [0.1, 0.2]}}\nsamples: 0\n", "samples must be a whole number from 1 to 10,000, got 0"),
    ("preset: smoke\nvariants: [3, 4]\n", "variant 1 must be a mapping of TrainConfig keys to values, got 3"),
    ("preset: smoke\nvariants: [{label: [a], lr: 0.1}]\n", "variant 1's label must be text, got ['a']"),
    ("preset: smoke\nvariants: [{label: a, lr: 0.1}, {lr: 0.2}, {label: a, lr: 0.3}]\n", "variants 1 and 3 are both labelled 'a'"),
    ("preset: smoke\nvariants: [{label: 1, lr: 0.1}, {label: '1', lr: 0.3}]\n", "variants 1 and 2 are both labelled '1'"),
    ("preset: smoke\nrandom: {lr: {loguniform: [0.1, 0.001]}}\n", "random key 'lr': loguniform needs finite numbers low < high above 0"),
    ("preset: smoke\nrandom: {lr: {loguniform: [0, 0.1]}}\n", "loguniform needs finite numbers low < high above 0, got [0, 0.1]"),
    ("preset: smoke\nrandom: {lr: {uniform: [.inf, 0.1]}}\n", "uniform needs finite numbers low < high, got [inf, 0.1]"),
    ("preset: smoke\nrandom: {lr: {uniform: [0.1, 0.2]}}\nasha: {grace: soon}\n", "asha grace must be a whole number from 1 to 10,000"),
    ("preset: smoke\nrandom: {lr: {uniform: [0.1, 0.2]}}\nasha: {reduction: 1}\n", "asha reduction must be a number above 1, got 1"),
    ("preset: smoke\ngrid: {lr: [0.1]}\nresources: 4\n", "resources takes cpu and gpu"),
    ("preset: [smoke]\ngrid: {lr: [0.1]}\n", "preset must be a preset's name, got ['smoke']"),
    ("preset: smoke\ngrid: {" + ", ".join(f"{key}: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]" for key in
                                         ("lr", "momentum", "ema", "rotate", "shift")) + "}\n",
     "the grid makes 100,000 trials (10 x 10 x 10 x 10 x 10), over the limit of 10,000"),
    ("preset: smoke\ngrid: {lr: [" + ", ".join(["&a [1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"&{b} [{', '.join(['*' + a] * 9)}]" for a, b in zip("abcd", "bcde")]) + "]}\n",
     "lr must be float, got [1, 1, 1, 1, ...]"),  # YAML aliases: 9^5 ones, shown in brief
])
def test_bad_sweep_files_are_one_line_naming_the_key(tmp_path, sample_archive, capsys, text, message):
    code = main(["tune", str(write(tmp_path, text)), "--data", str(sample_archive), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error and message in error and len(error) < 1000, error[:1000]


def test_a_grid_is_every_combination():
    trials = grid_trials({"lr": [0.1, 0.2], "mix": ["none", "cutmix"]}, "here")
    assert [t["label"] for t in trials] == ["lr=0.1,mix=none", "lr=0.1,mix=cutmix", "lr=0.2,mix=none", "lr=0.2,mix=cutmix"]
    with pytest.raises(FerlabError):
        grid_trials({"lr": "0.1"}, "here")


def test_asha_and_fractional_resources_are_read(tmp_path):
    sweep = read_sweep(write(tmp_path, "preset: cpu\nrandom: {lr: {loguniform: [0.0001, 0.01]}}\nsamples: 6\n"
                                       "asha: {grace: 2, reduction: 3}\nresources: {cpu: 1, gpu: 0.25}\n"))
    assert sweep.samples == 6 and sweep.asha == {"grace": 2, "reduction": 3}
    assert sweep.resources == {"cpu": 1, "gpu": 0.25} and sweep.random == {"lr": ("loguniform", [0.0001, 0.01])}


@ray_only
def test_an_asha_random_search_runs_and_never_passes_the_schedule(tmp_path, sample_archive):
    sweep = write(tmp_path, "preset: smoke\nepochs: 3\nrandom: {lr: {loguniform: [0.00001, 0.01]}}\nsamples: 4\n"
                            "asha: {grace: 1, reduction: 2}\n")
    out = tmp_path / "out"
    assert main(["tune", str(sweep), "--data", str(sample_archive), "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 4 and all(r["error"] is None and 1 <= r["epochs"] <= 3 for r in rows)
    assert all(r["label"].startswith("lr=") and 1e-5 <= float(r["label"][3:]) <= 1e-2 for r in rows)
    assert "with ASHA" in (out / "table.md").read_text()


def test_without_ray_trials_run_as_local_processes_ranked_on_publictest(tmp_path, sample_archive, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as on a GPU machine that cannot install it
    sweep = write(tmp_path, "preset: smoke\nepochs: 2\nvariants:\n  - {label: slow, lr: 0.00001}\n"
                            "  - {label: broken, init: /no/such/run}\n  - {label: usual}\n")
    out = tmp_path / "out"
    assert main(["tune", str(sweep), "--local", "2", "--data", str(sample_archive), "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert [r["label"] for r in rows][-1] == "broken" and rows[-1]["error"] == "/no/such/run: no such run folder or checkpoint"
    finished = rows[:2]
    assert [r["publictest"] for r in finished] == sorted((r["publictest"] for r in finished), reverse=True)
    for row in finished:
        history = list(csv.DictReader(open(Path(row["run"]) / "history.csv")))
        assert row["epochs"] == 2 == len(history) and row["publictest"] == max(float(h["val_accuracy"]) for h in history)
    # The known answer: a trial's process trains exactly what fit() trains here.
    usual = next(r for r in finished if r["label"] == "usual")
    (tmp_path / "here").mkdir()
    here = fit(resolve_config("smoke", overrides={"epochs": 2}), load_faces(sample_archive), tmp_path / "here",
               progress=False, log=lambda _: None)
    assert usual["publictest"] == pytest.approx(here["best_val_accuracy"], abs=1e-6)
    assert not (out / "faces.pt").exists()  # the shared decoded faces are removed afterwards
    table = (out / "table.md").read_text()
    assert "on local processes" in table and "PrivateTest not evaluated" in table
    assert "3 trials, 1 failed; best on PublicTest:" in capsys.readouterr().out


@pytest.mark.parametrize("text, arguments, message", [
    ("preset: smoke\nrandom: {lr: {loguniform: [0.0001, 0.01]}}\n", ["--local", "2"], "a random search needs Ray"),
    ("preset: smoke\ngrid: {lr: [0.1]}\nasha: {grace: 1}\n", ["--local", "2"], "ASHA early stopping needs Ray"),
    ("preset: smoke\ngrid: {lr: [0.1]}\n", ["--local", "0"], "--local needs at least 1 trial at a time"),
    ("preset: smoke\ngrid: {lr: [0.1]}\n", ["--local", "2", "--address", "auto"], "give one of them"),
])
def test_local_sweeps_refuse_what_needs_ray_in_one_line(tmp_path, sample_archive, capsys, text, arguments, message):
    code = main(["tune", str(write(tmp_path, text)), *arguments, "--data", str(sample_archive), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error and message in error, error


def test_an_output_that_is_a_file_is_one_line_before_the_data_is_read(tmp_path, capsys):
    """It was "File exists", after the data was decoded."""
    taken = tmp_path / "taken"
    taken.write_text("")
    code = main(["tune", str(write(tmp_path, "preset: smoke\ngrid: {lr: [0.1]}\n")), "--local", "1",
                 "--data", str(tmp_path / "absent"), "--out", str(taken)])
    assert code == 2 and capsys.readouterr().err.strip() == f"ferlab: error: {taken}: exists and is not a folder; choose another output folder"


def test_results_that_are_not_a_sweeps_are_never_replaced(tmp_path, capsys):
    """table.md or results.json of something else in --out were replaced without a word."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"experiment": "cnn-vs-dnn"}')
    code = main(["tune", str(write(tmp_path, "preset: smoke\ngrid: {lr: [0.1]}\n")), "--local", "1",
                 "--data", str(tmp_path / "absent"), "--out", str(out)])
    assert code == 2 and capsys.readouterr().err.strip() == (
        f"ferlab: error: {out / 'results.json'}: not written by ferlab tune, and would be replaced; choose another --out")
    assert (out / "results.json").read_text() == '{"experiment": "cnn-vs-dnn"}'
