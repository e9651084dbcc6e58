"""A training run from start to finish, as library calls: the command line (``ferlab train``), the
experiments and a notebook all run the same steps.

    start_run    check the output (check_new_run_folder), make the run folder, write the resolved config
    train_run    fit -> curves -> calibrate best.pt on PublicTest -> evaluate val and test, plain and with
                 the test-time augmentation chosen on PublicTest -> metrics.json
    resume_config  the config of an interrupted run, with the only change allowed (more epochs)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from ferlab import distributed, training
from ferlab.calibration import calibrate_checkpoint, describe_calibration
from ferlab.checkpoint import LoadedModel, load_model, read_checkpoint
from ferlab.config import TrainConfig, config_from_dict
from ferlab.data.faceset import FaceSet
from ferlab.device import choose_device
from ferlab.errors import FerlabError
from ferlab.outputs import read_small_text
from ferlab.report.figures import plot_history
from ferlab.runs import (FIGURE_OUTPUTS, choose_tta_on_public_test, evaluate_split, evaluation_entry, files_named,
                         labelled_split, new_run_dir, writable_folder, write_config, write_evaluation, write_json)


RUN_OUTPUTS = ("best.pt", "history.csv", *FIGURE_OUTPUTS)  # what a run (and a report of it) writes beside last.pt, config.yaml
CONFIG_MARK = "# resolved training config"  # the first line of a run's config.yaml (runs.write_config)


def check_new_run_folder(out: Path) -> Path:
    """``out`` as the folder of a new run: writable, never one that already holds a run, and never
    one holding files of a run's names that a run did not write (a curves.png of the user's was
    replaced). A config.yaml alone, of a run stopped in its first epoch, is started again."""
    if (out / "last.pt").exists():
        raise FerlabError(f"{out} already holds a run; continue it with --resume {out} or choose another --out")
    taken = files_named(out, RUN_OUTPUTS)
    config = out / "config.yaml"
    if config.exists() and not (read_small_text(config) or "").startswith(CONFIG_MARK):
        taken.insert(0, config)
    if taken:
        raise FerlabError(f"{taken[0]}: not written by a ferlab run, and would be replaced; choose another --out")
    return writable_folder(out)


def start_run(config: TrainConfig, data_info: dict, out: Path | None, runs: Path) -> Path:
    """The run folder for a new run: ``out`` (see check_new_run_folder) or a new folder under
    ``runs``; the resolved config is written into it. Under torchrun, rank 0 makes it and every
    rank gets its name (or rank 0's error)."""
    world = distributed.join(choose_device(config.device))
    made, problem = None, None
    if world.main:
        try:
            made = check_new_run_folder(out) if out is not None else new_run_dir(writable_folder(runs), config.model)
            write_config(made, config, data_info)
        except FerlabError as error:
            problem = str(error)
    made, problem = distributed.shared((made, problem), world)
    if problem:
        raise FerlabError(problem)
    return made


def resume_config(run_dir: Path, epochs: int | None = None, changed: list[str] = ()) -> tuple[dict, TrainConfig, list[str]]:
    """(last.pt, config, notes) to continue ``run_dir``: the recorded config, with ``epochs``
    extended if asked; any other ``changed`` option is refused by name."""
    if not run_dir.is_dir():
        raise FerlabError(f"--resume {run_dir}: expected a run folder (one holding last.pt)")
    if changed:
        raise FerlabError(f"--resume continues the recorded run; it cannot change "
                          f"{', '.join('--' + c.replace('_', '-') for c in changed)} (start a new run for that)")
    state = read_checkpoint(run_dir / "last.pt", for_resume=True)
    config, notes = config_from_dict(state["config"]), []
    if epochs is not None and epochs != config.epochs:
        if epochs < state["epoch"]:
            raise FerlabError(f"--epochs {epochs}: {run_dir} has already trained {state['epoch']} epochs")
        if config.schedule in ("onecycle", "cosine"):
            notes.append(f"note: the {config.schedule} learning-rate schedule is stretched from {config.epochs} to "
                         f"{epochs} epochs from epoch {state['epoch'] + 1} on")
        config = dataclasses.replace(config, epochs=epochs)
    return state, config, notes


def train_run(config: TrainConfig, faces: FaceSet, run_dir: Path, *, data_info: dict, resume: bool = False,
              progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Train (``training.fit``), draw the curves, calibrate ``best.pt`` on PublicTest, evaluate it
    on PublicTest and PrivateTest, plain and with the test-time augmentation chosen on PublicTest
    (``report_chosen_tta``), and write ``metrics.json``; returns what metrics.json holds.
    A KeyboardInterrupt passes through (``last.pt`` holds the state to resume from)."""
    summary = training.fit(config, faces, run_dir, data_info=data_info, resume=resume, progress=progress, log=log)
    history = summary.pop("history")
    if not distributed.join(choose_device(config.device)).main:  # rank 0 finishes the run folder alone
        return {"model": config.model, "run": str(run_dir), **summary}
    plot_history(history, run_dir / "curves.png", f"{config.model} ({run_dir.name})")
    best = load_model(run_dir, "best")  # its history ends at the best epoch; it keeps the whole one, as last.pt
    best = dataclasses.replace(best, checkpoint={**best.checkpoint, "history": history})
    loaded = calibrate_checkpoint(best, faces, run_dir / "best.pt")
    log(describe_calibration(loaded.checkpoint["calibration"]))
    results = {"model": config.model, "run": str(run_dir), "data": faces.source, **summary, "evaluations": {}}
    for split in ("val", "test"):
        subset = faces.split(split)
        if len(subset) and subset.labelled:
            record(results, evaluate_split(loaded, faces, split, run_dir), log)
    if "val_accuracy" in results:
        report_chosen_tta(loaded, faces, run_dir, results, log)
    write_json(run_dir / "metrics.json", results)
    return results


def record(results: dict, evaluation: dict, log: Callable[[str], None], key: str = "accuracy") -> None:
    results[f"{evaluation['split']}_{key}"] = evaluation["accuracy"]
    results["evaluations"][evaluation["name"]] = evaluation_entry(evaluation)
    log(evaluation["report"])


def report_chosen_tta(loaded: LoadedModel, faces: FaceSet, run_dir: Path, results: dict,
                      log: Callable[[str], None]) -> None:
    """Choose the test-time augmentation on PublicTest and, unless it is none, evaluate the
    model with it on PublicTest and PrivateTest too; ``results["tta"]`` records the choice and
    every policy's PublicTest accuracy, ``val_tta_accuracy``/``test_tta_accuracy`` the chosen one's."""
    chosen, accuracies, logits = choose_tta_on_public_test(loaded, faces)
    results["tta"] = {"chosen": chosen, "chosen_on": "val", "val_accuracies": accuracies}
    log(f"test-time augmentation chosen on {faces.split_title('val')}: {chosen} ("
        + ", ".join(f"{policy} {100 * accuracy:.2f}%" for policy, accuracy in accuracies.items()) + ")")
    if chosen == "none":
        return
    val = labelled_split(faces, "val")
    record(results, write_evaluation(logits, val, "val", run_dir, tta=chosen, temperature=loaded.temperature), log, "tta_accuracy")
    test = faces.split("test")
    if len(test) and test.labelled:
        record(results, evaluate_split(loaded, faces, "test", run_dir, tta=chosen), log, "tta_accuracy")
