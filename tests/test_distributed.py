"""``torchrun --nproc-per-node 2 -m ferlab train`` on the CPU (Gloo; issue 14, item 3): a complete
run folder written by rank 0 alone, resume, and accuracy in the band of one process with the same
global batch."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from ferlab.distributed import World, per_rank_batch
from ferlab.errors import FerlabError

EPOCHS = 4


def torchrun(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               str(processes), "-m", "ferlab", *args]  # --standalone: a free port of its own
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment, check=False)


def ferlab(*args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ferlab", *args], capture_output=True, text=True, timeout=600,
                          env=environment, check=False)


def history(run) -> list[dict]:
    with open(run / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sample_archive):
    folder = tmp_path_factory.mktemp("ddp")
    common = ["train", "--preset", "smoke", "--epochs", str(EPOCHS), "--data", str(sample_archive), "--quiet"]
    two = torchrun(*common, "--out", str(folder / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    one = ferlab(*common, "--out", str(folder / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    return folder / "one", folder / "two", two.stdout


def test_two_processes_leave_one_complete_run_folder(runs):
    _, two, log = runs
    for name in ("config.yaml", "best.pt", "last.pt", "history.csv", "metrics.json", "eval-val.json", "eval-test.json",
                 "curves.png"):
        assert (two / name).exists(), name
    assert len(history(two)) == EPOCHS
    assert log.count("done: best epoch") == 1 and log.count("data: ") == 1  # rank 0 alone prints


def test_two_processes_land_in_the_band_of_one_with_the_same_global_batch(runs):
    one, two, _ = runs
    accuracy = {run: json.loads((run / "metrics.json").read_text()) for run in (one, two)}
    # 280 training faces, 4 epochs of a tiny net: one process and two see the same global batch
    # (32) and the same initial weights, but different shuffles, so they agree within a band.
    assert abs(accuracy[one]["val_accuracy"] - accuracy[two]["val_accuracy"]) <= 0.15
    first_loss = [float(history(run)[0]["train_loss"]) for run in (one, two)]
    assert abs(first_loss[0] - first_loss[1]) <= 0.15 * first_loss[0]
    assert len(history(one)) == len(history(two))


def test_a_two_process_run_resumes(runs):
    _, two, _ = runs
    resumed = torchrun("train", "--resume", str(two), "--epochs", str(EPOCHS + 1), "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = history(two)
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 2))


def test_more_processes_than_faces_per_batch_is_one_line(tmp_path, sample_archive):
    failed = torchrun("train", "--preset", "smoke", "--batch-size", "3", "--data", str(sample_archive),
                      "--out", str(tmp_path / "run"), "--quiet")
    assert failed.returncode != 0
    errors = [line for line in failed.stderr.splitlines() if line.startswith("ferlab: error:")]
    assert errors == ["ferlab: error: --batch-size 3 cannot be split over 2 processes: it must be a multiple of 2 "
                      "with at least 2 faces per process (batch norm needs 2)"]


def test_the_per_rank_batch_known_answers():
    assert per_rank_batch(32, World(0, 1), 280) == 32
    assert per_rank_batch(32, World(1, 4), 280) == 8
    with pytest.raises(FerlabError, match="multiple of 4"):
        per_rank_batch(30, World(0, 4), 280)
    with pytest.raises(FerlabError, match="at least 2 faces per process"):
        per_rank_batch(4, World(0, 4), 280)
    with pytest.raises(FerlabError, match="too few"):
        per_rank_batch(32, World(0, 2), 20)
