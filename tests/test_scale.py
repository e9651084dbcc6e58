"""Experiments on Ray (issue 14, item 2): the arms and seeds as Ray tasks on a Ray started in the
process, bit for bit the sequential runner's results; a failed task, an unreachable cluster and a
missing Ray are each one line."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from ferlab.cli import main
from ferlab.errors import FerlabError

pytest.importorskip("ray")

TINY = """name: tiny
question: Does a small CNN beat a fully connected network on a tiny budget?
base: {preset: smoke, mixed_precision: false}
budgets:
  cpu: {epochs: 1, batch_size: 32}
arms:
  - {label: fast, model: fastnet, model_options: {widths: [8, 16, 16, 32]}}
  - {label: dnn, model: dnn}
baseline: dnn
"""


def without_times(results: dict) -> dict:
    """results.json without wall-clock seconds, the only thing allowed to differ."""
    for arm in results["arms"].values():
        for run in arm["runs"]:
            run.pop("seconds")
            for row in run["history"]:
                row.pop("seconds")
    return results


def test_an_experiment_on_ray_equals_the_sequential_one_bit_for_bit(tmp_path, sample_archive, capsys):
    definition = tmp_path / "tiny.yaml"
    definition.write_text(TINY)
    common = ["experiment", str(definition), "--seeds", "2", "--data", str(sample_archive), "--quiet"]
    assert main([*common, "--out", str(tmp_path / "sequential")]) == 0
    assert main([*common, "--ray", "--out", str(tmp_path / "ray")]) == 0
    sequential, on_ray = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("sequential", "ray"))
    assert without_times(on_ray) == without_times(sequential)
    for run in ("fast-seed0", "dnn-seed1"):
        weights = [torch.load(tmp_path / name / "runs" / run / "best.pt", weights_only=True)["model"]
                   for name in ("sequential", "ray")]
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert "tiny / dnn / seed 1: PublicTest" in capsys.readouterr().out


def test_a_failed_task_is_reported_and_the_others_finish():
    from ferlab.scale import ray_session, run_tasks

    def square_unless_three(value, threads=None):  # defined here: Ray ships it to the workers by value
        if value == 3:
            raise ValueError("three is not allowed")
        return value * value

    finished = []
    with ray_session():
        with pytest.raises(FerlabError, match=r"1 of 4 Ray tasks failed; task 3: ValueError: three is not allowed"):
            run_tasks(square_unless_three, [(1,), (2,), (3,), (4,)], done=lambda args, result: finished.append(result))
    assert sorted(finished) == [1, 4, 16]


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:1", "cannot join the Ray cluster at 127.0.0.1:1: Connection refused"),
    ("no-port-here", "Ray address 'no-port-here': expected host:port"),
])
def test_an_unreachable_cluster_is_one_line_and_exit_2(tmp_path, sample_archive, capsys, address, message):
    definition = tmp_path / "tiny.yaml"
    definition.write_text(TINY)
    code = main(["experiment", str(definition), "--address", address, "--data", str(sample_archive),
                 "--out", str(tmp_path / "out"), "--quiet"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.startswith(f"ferlab: error: {message}") and "\n" not in error


def test_without_ray_the_flag_says_how_to_install_it(monkeypatch):
    from ferlab.scale import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: import ray raises ImportError
    with pytest.raises(FerlabError, match=r"--ray needs Ray, which is not installed: pip install 'ray\[tune\]"):
        require_ray()
