"""Experiment definitions resolve, run with a tiny budget, and produce their table and plot."""

from __future__ import annotations

import dataclasses

import pytest

from ferlab.errors import FerlabError
from ferlab.experiments import check_parameter_ratio, list_experiments, load_experiment, publish, run_experiment


def test_the_five_questions_are_defined_and_resolve():
    assert list_experiments() == ["architectures", "augmentation", "cnn-vs-dnn", "confusions", "normalization"]
    for name in list_experiments():
        experiment = load_experiment(name)
        assert experiment.question and experiment.arms
        assert experiment.baseline in [arm["label"] for arm in experiment.arms]


def test_cnn_vs_dnn_sizes_stay_within_ten_percent():
    experiment = load_experiment("cnn-vs-dnn")
    counts = check_parameter_ratio(experiment)
    assert max(counts.values()) / min(counts.values()) <= 1.1
    drifted = dataclasses.replace(experiment, arms=({"label": "cnn", "model": "cnn"},
                                                    {"label": "dnn", "model": "dnn", "model_options": {"hidden": [4096, 1024, 512]}}))
    with pytest.raises(FerlabError, match=r"differ by 2.11x, more than the 1.1x"):
        check_parameter_ratio(drifted)


def test_unknown_keys_are_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\narms: [{label: a, epochz: 3}]\n")
    with pytest.raises(FerlabError, match="unknown key 'epochz'"):
        load_experiment(str(path))


@pytest.mark.parametrize("body, message", [
    # each of these was a TypeError traceback
    ("arms: 5", "needs arms, a list of mappings each with a label"),
    ("arms: [{label: [x]}]", "an arm's label must be text, got ['x']"),
    ("base: 5\narms: [{label: a}]", "base must be a mapping of TrainConfig keys to values, got 5"),
    ("budgets: {cpu: 5}\narms: [{label: a}]", "budget cpu must be a mapping of TrainConfig keys to values, got 5"),
    ("budgets: 3\narms: [{label: a}]", "budgets must be a mapping of cpu and gpu to overrides, got 3"),
    ("max_param_ratio: fast\narms: [{label: a}]", "max_param_ratio must be a number of at least 1, got 'fast'"),
    # each of these ran: two arms trained into one run folder, or one outside the output folder
    ("arms: [{label: a, model: cnn}, {label: a, model: dnn}]", "arms 'a' and 'a' would share a run folder"),
    ("arms: [{label: flip only}, {label: flip-only}]", "arms 'flip only' and 'flip-only' would share a run folder"),
    ("arms: [{label: A}, {label: a}]", "arms 'A' and 'a' would share a run folder"),
    ("arms: [{label: ../../x}]", "arm label '../../x' cannot name a run folder"),
    ("arms: [{label: a}]\nbaseline: b", "baseline 'b' is not an arm's label; the labels: 'a'"),
    ("arms: [{label: off}, {label: on}]", "an arm's label must be text, got False (YAML reads off, no, yes and on as true"),
])
def test_a_definition_of_the_wrong_shape_is_one_line_naming_the_file(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\nquestion: q\n{body}\n")
    with pytest.raises(FerlabError) as error:
        load_experiment(str(path))
    assert str(error.value).startswith(f"{path}: {message}")


def test_numbers_are_labels_as_written(tmp_path):
    path = tmp_path / "widths.yaml"
    path.write_text("name: widths\nquestion: q\nbase: {preset: smoke}\narms: [{label: 64}, {label: 6.5}]\nbaseline: 6.5\n")
    experiment = load_experiment(str(path))
    assert [arm["label"] for arm in experiment.arms] == ["64", "6.5"] and experiment.baseline == "6.5"


@pytest.mark.parametrize("seeds", ["0", "-1", "99999999999999999999"])
def test_a_number_of_seeds_out_of_range_is_one_line_before_the_data_is_read(seeds, tmp_path, capsys):
    """0 or less was an IndexError and 1e20 an OverflowError, each after the data was read."""
    from ferlab.cli import main

    code = main(["experiment", "cnn-vs-dnn", "--seeds", seeds, "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "out")])
    assert code == 2 and capsys.readouterr().err.strip() == f"ferlab: error: --seeds {seeds}: expected a number of seeds from 1 to 100"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["--out", "--publish"])
def test_an_output_that_is_a_file_is_one_line_before_any_training(option, tmp_path, capsys):
    """--out was "File exists" after the data was read; --publish failed after every run had trained."""
    from ferlab.cli import main

    taken = tmp_path / "taken"
    taken.write_text("")
    arguments = {"--out": ["--out", str(taken)], "--publish": ["--out", str(tmp_path / "out"), "--publish", str(taken)]}[option]
    code = main(["experiment", "cnn-vs-dnn", "--seeds", "1", "--data", str(tmp_path / "absent"), *arguments])
    assert code == 2 and capsys.readouterr().err.strip() == f"ferlab: error: {taken}: exists and is not a folder; choose another output folder"
    assert not (tmp_path / "out").exists()


def test_results_of_another_experiment_or_a_users_file_are_never_replaced(sample_faces, tmp_path, capsys):
    """A results.md of the user's in --out was replaced without a word."""
    from ferlab.cli import main

    experiment = load_experiment("cnn-vs-dnn")
    tiny = dataclasses.replace(experiment, budgets={"cpu": {"epochs": 1, "batch_size": 32}})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.md").write_text("my notes\n")
    with pytest.raises(FerlabError, match=r"results.md: not written by experiment cnn-vs-dnn, and would be replaced"):
        run_experiment(tiny, sample_faces, mine, seeds=[0], budget="cpu", log=lambda _: None)
    assert (mine / "results.md").read_text() == "my notes\n" and sorted(p.name for p in mine.iterdir()) == ["results.md"]
    ours = tmp_path / "ours"
    run_experiment(tiny, sample_faces, ours, seeds=[0], budget="cpu", log=lambda _: None)
    run_experiment(tiny, sample_faces, ours, seeds=[0], budget="cpu", log=lambda _: None)  # its own: replaced
    code = main(["experiment", "augmentation", "--seeds", "1", "--data", str(tmp_path / "absent"), "--out", str(ours)])
    assert code == 2 and capsys.readouterr().err.strip() == (
        f"ferlab: error: {ours / 'results.json'}: not written by experiment augmentation, and would be replaced; choose another --out")


def test_publish_rebuilds_its_own_summary_and_never_a_users(tmp_path, capsys):
    from ferlab.cli import main
    from ferlab.experiments import check_publish_folder
    from tests.conftest import REPO

    check_publish_folder(REPO / "experiments")  # the published tables: rebuilt
    (tmp_path / "RESULTS.md").write_text("# My results\n")
    code = main(["experiment", "cnn-vs-dnn", "--seeds", "1", "--data", str(tmp_path / "absent"),
                 "--out", str(tmp_path / "out"), "--publish", str(tmp_path)])
    assert code == 2 and capsys.readouterr().err.strip() == (
        f"ferlab: error: {tmp_path / 'RESULTS.md'}: not written by ferlab experiment --publish, and would be replaced; "
        "choose another --publish folder")
    assert (tmp_path / "RESULTS.md").read_text() == "# My results\n" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("seeds", [[], [0, 0]])
def test_no_seed_or_a_seed_twice_is_refused_by_the_api(seeds, sample_faces, tmp_path):
    with pytest.raises(FerlabError, match=r"expected one or more distinct seeds"):
        run_experiment(load_experiment("cnn-vs-dnn"), sample_faces, tmp_path / "out", seeds=seeds, budget="cpu")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["cnn-vs-dnn", "augmentation", "confusions"])
def test_a_tiny_run_writes_table_plot_and_summary(name, sample_faces, tmp_path):
    experiment = load_experiment(name)
    tiny = dataclasses.replace(experiment, budgets={"cpu": {"epochs": 1, "batch_size": 32}},
                               arms=tuple({**arm, "mixed_precision": False} for arm in experiment.arms))
    results = run_experiment(tiny, sample_faces, tmp_path / name, seeds=[0, 1], budget="cpu", log=lambda _: None)
    table = (tmp_path / name / "results.md").read_text()
    assert (tmp_path / name / "curves.png").stat().st_size > 5000
    for arm in experiment.arms:
        assert f"| {arm['label']} |" in table
        assert len(results["arms"][arm["label"]]["runs"]) == 2
    others = len(experiment.arms) - 1
    assert table.count("points on PrivateTest over 2 seeds (") == others
    if experiment.confusions:
        assert (tmp_path / name / "confusions.png").exists() and "Most-confused pairs" in table
    (tmp_path / "published").mkdir()
    (tmp_path / "published" / "NOTES.md").write_text("A remark kept at the end.\n")
    published = publish(tmp_path / name, results, tmp_path / "published", "test device")
    folder = f"{results['experiment']}-cpu"
    assert "Measured on test device" in published.parent.joinpath(folder, "results.md").read_text()
    assert f"{folder}/curves.png" in published.read_text()
    assert published.read_text().endswith("A remark kept at the end.\n")
