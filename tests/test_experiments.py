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
