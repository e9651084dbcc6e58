"""``ferlab tune SWEEP.yaml``: choose a recipe on PublicTest with Ray Tune.

A sweep file names a preset and what to vary, as ``variants`` (labelled sets of TrainConfig
overrides), a ``grid`` (every combination of the listed values) or a ``random`` search
(``samples`` draws from ``{uniform: [a, b]}``, ``{loguniform: [a, b]}`` or ``{choice: [...]}``)::

    preset: cpu
    grid: {lr: [0.001, 0.003], mix: [none, cutmix]}
    epochs: 12                 # optional, for every trial
    asha: {grace: 2, reduction: 3}   # optional: stop trials that trail on PublicTest early
    resources: {cpu: 1, gpu: 0.25}   # per trial: four trials share one GPU

Each trial trains into ``OUT/trials/<label>/`` (a normal run folder) and reports its PublicTest
accuracy after every epoch; ASHA (Li et al. 2020) stops the trailing ones. The output is a table
ranked by best PublicTest accuracy: PrivateTest is never evaluated here. A trial that fails is
listed with its error and the others go on. Ray starts inside the process on this machine, or
joins ``--address``/``RAY_ADDRESS``.

Without Ray (``ferlab tune --local N``, ``run_sweep_locally``), variants and grids run as ``N``
training processes at a time on this machine, sharing its cores or its GPU: a GPU machine without
internet cannot install Ray (its wheel alone is 79 MB), and there this is how a sweep runs.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ferlab.config import ConfigError, coerce, parse_yaml, read_text_file, resolve_config
from ferlab.errors import FerlabError, brief
from ferlab.outputs import write_text

SWEEP_KEYS = ("preset", "variants", "grid", "random", "samples", "epochs", "asha", "resources")
DISTRIBUTIONS = ("uniform", "loguniform", "choice")
MAX_TRIALS = 10_000  # trials of one sweep: a grid's combinations, variants or random draws (a grid of 14
                     # keys with 10 values each would be 10^14 of them, and took all memory building them)


@dataclass(frozen=True)
class Sweep:
    preset: str
    trials: list[dict] = field(default_factory=list)  # variants, or the grid's combinations: label + overrides
    random: dict = field(default_factory=dict)       # key -> (distribution, arguments)
    samples: int = 1                                  # draws of a random search
    epochs: int | None = None
    asha: dict | None = None                          # {"grace": epochs, "reduction": factor}
    resources: dict = field(default_factory=lambda: {"cpu": 1, "gpu": 0})


def check_overrides(values: dict, where: str) -> dict:
    """TrainConfig overrides, each checked by name and type (the config's own rules)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of TrainConfig keys to values, got {brief(values)}")
    return {key: coerce(key, value, where) for key, value in values.items()}


def grid_trials(grid: dict, where: str) -> list[dict]:
    """Every combination of the grid's values, each value checked once, at most MAX_TRIALS of them;
    labels show the values as written."""
    checked = {}
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: grid key {brief(key)} needs a non-empty list of values")
        checked[key] = [(value, coerce(key, value, where)) for value in values]  # before any label shows them
    count = math.prod(len(values) for values in grid.values())
    if count > MAX_TRIALS:
        raise ConfigError(f"{where}: the grid makes {count:,} trials ({' x '.join(str(len(v)) for v in grid.values())}), "
                          f"over the limit of {MAX_TRIALS:,}; use fewer values or a random search")
    return [{"label": ",".join(f"{k}={written if isinstance(written, (str, int, float)) else brief(written)}"
                               for k, (written, _) in zip(checked, combination)) or "preset",
             **{k: value for k, (_, value) in zip(checked, combination)}}
            for combination in itertools.product(*checked.values())]


def variant_trials(variants, where: str) -> list[dict]:
    """Labelled sets of overrides (a variant without a label is "variant N")."""
    if not isinstance(variants, list) or not variants:
        raise ConfigError(f"{where}: variants needs a non-empty list")
    if len(variants) > MAX_TRIALS:
        raise ConfigError(f"{where}: {len(variants):,} variants, over the limit of {MAX_TRIALS:,}")
    trials = []
    for i, variant in enumerate(variants, start=1):
        if not isinstance(variant, dict):
            raise ConfigError(f"{where}: variant {i} must be a mapping of TrainConfig keys to values, got {brief(variant)}")
        label = variant.get("label", f"variant {i}")
        if not isinstance(label, (str, int, float)) or isinstance(label, bool):
            raise ConfigError(f"{where}: variant {i}'s label must be text, got {brief(label)}")
        earlier = next((j for j, trial in enumerate(trials, start=1) if trial["label"] == str(label)), None)
        if earlier is not None:  # the ranked table would show two rows of one label
            raise ConfigError(f"{where}: variants {earlier} and {i} are both labelled {brief(str(label))}")
        overrides = {k: v for k, v in variant.items() if k != "label"}
        trials.append({"label": str(label), **check_overrides(overrides, f"{where}: variant {i}")})
    return trials


def random_space(random: dict, where: str) -> dict:
    """key -> (distribution, arguments), each checked: choices by type, ranges as low < high
    (and above 0 for loguniform)."""
    if not isinstance(random, dict) or not random:
        raise ConfigError(f"{where}: random needs at least one key with a distribution")
    space = {}
    for key, spec in random.items():
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
            raise ConfigError(f"{where}: random key {brief(key)}: expected one of "
                              f"{', '.join('{' + d + ': ...}' for d in DISTRIBUTIONS)}")
        kind, arguments = next(iter(spec.items()))
        if not isinstance(arguments, list) or not arguments or (kind != "choice" and len(arguments) != 2):
            raise ConfigError(f"{where}: random key {brief(key)}: {kind} needs "
                              f"{'a non-empty list' if kind == 'choice' else '[low, high]'}")
        for value in arguments:
            coerce(key, value, where)  # the key exists and takes values of this type
        if kind != "choice":
            check_range(key, kind, arguments, where)
        space[key] = (kind, arguments)
    return space


def check_range(key: str, kind: str, bounds: list, where: str) -> None:
    low, high = bounds
    numbers = all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)
    if not numbers or not low < high or (kind == "loguniform" and low <= 0):
        raise ConfigError(f"{where}: random key {brief(key)}: {kind} needs finite numbers low < high"
                          f"{' above 0' if kind == 'loguniform' else ''}, got {brief(bounds)}")


def whole_number(value, name: str, low: int, high: int, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{where}: {name} must be a whole number from {low:,} to {high:,}, got {brief(value)}")
    return value


def check_asha(asha, where: str) -> dict | None:
    """ASHA's grace period (epochs, at least 1) and reduction factor (above 1), or None."""
    if asha is None:
        return None
    if not isinstance(asha, dict) or set(asha) - {"grace", "reduction"}:
        raise ConfigError(f"{where}: asha takes grace (epochs) and reduction (a factor above 1)")
    whole_number(asha.get("grace", 1), "asha grace", 1, 10_000, where)
    reduction = asha.get("reduction", 3)
    if not isinstance(reduction, (int, float)) or isinstance(reduction, bool) or not 1 < reduction < math.inf:
        raise ConfigError(f"{where}: asha reduction must be a number above 1, got {brief(reduction)}")
    return asha


def check_resources(given, where: str) -> dict:
    """Each trial's CPUs and GPUs (default one CPU, no GPU): non-negative numbers."""
    resources = {"cpu": 1, "gpu": 0, **(given if isinstance(given, dict) else {})}
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf for v in resources.values())
    if (given is not None and not isinstance(given, dict)) or set(resources) - {"cpu", "gpu"} or not numbers:
        raise ConfigError(f"{where}: resources takes cpu and gpu, non-negative numbers (gpu 0.25: four trials per GPU)")
    return resources


def read_sweep(path: Path) -> Sweep:
    """A sweep file, every key checked: unknown keys, empty grids and bad values are one line
    naming the key; a sweep of more than MAX_TRIALS trials is refused before any is built."""
    data = parse_yaml(read_text_file(path), path) or {}
    if not isinstance(data, dict):
        raise FerlabError(f"{path}: expected a mapping with preset and variants, grid or random")
    unknown = sorted((key for key in data if key not in SWEEP_KEYS), key=str)
    if unknown:
        raise FerlabError(f"{path}: unknown key {brief(unknown[0])}; a sweep has {', '.join(SWEEP_KEYS)}")
    where = str(path)
    if data.get("preset") is not None and not isinstance(data["preset"], str):
        raise FerlabError(f"{path}: preset must be a preset's name, got {brief(data['preset'])}")
    resolve_config(data.get("preset"))  # an unknown preset is one line now
    kinds = [k for k in ("variants", "grid", "random") if data.get(k) is not None]
    if len(kinds) != 1:
        raise FerlabError(f"{path}: give exactly one of variants, grid or random (got {', '.join(kinds) or 'none'})")
    trials, random = [], {}
    if "variants" in kinds:
        trials = variant_trials(data["variants"], where)
    elif "grid" in kinds:
        if not isinstance(data["grid"], dict) or not data["grid"]:
            raise FerlabError(f"{path}: grid needs at least one key with a list of values")
        trials = grid_trials(data["grid"], where)
    else:
        random = random_space(data["random"], where)
    samples = whole_number(data.get("samples", 1), "samples", 1, MAX_TRIALS, where)
    asha, resources = check_asha(data.get("asha"), where), check_resources(data.get("resources"), where)
    epochs = data.get("epochs")
    if epochs is not None:
        coerce("epochs", epochs, where)
    for trial in trials:  # each trial's whole config is valid before any trial starts
        overrides = {k: v for k, v in trial.items() if k != "label"}
        try:
            resolve_config(data.get("preset"), overrides={**overrides, **({"epochs": epochs} if epochs else {})})
        except ConfigError as error:
            raise FerlabError(f"{path}: trial {brief(trial['label'])}: {error}") from None
    return Sweep(data.get("preset"), trials, random, samples, epochs, asha, resources)


def draw_label(parameters: dict) -> str:
    """A random draw's name: its values, floats to 4 significant digits."""
    return ",".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in parameters.items())


def trial_folder(out: Path, prefix: str, label: str) -> Path:
    return out / "trials" / f"{prefix}-{re.sub(r'[^A-Za-z0-9._=,-]+', '-', label)[:80]}"


def trial_overrides(sweep: Sweep, index: int) -> tuple[str, dict, str]:
    """Label, TrainConfig overrides and folder prefix of variant or grid point ``index``."""
    chosen = sweep.trials[index]
    overrides = {k: v for k, v in chosen.items() if k != "label"}
    return chosen["label"], {**overrides, **({"epochs": sweep.epochs} if sweep.epochs else {})}, f"{index + 1:03d}"


def train_trial(parameters: dict, *, sweep: Sweep, faces, out: Path) -> None:
    """One Ray Tune trial: train into its run folder, report PublicTest accuracy every epoch."""
    from ray import tune

    if "trial" in parameters:  # a variant or a grid point
        label, overrides, prefix = trial_overrides(sweep, parameters["trial"])
    else:  # a random draw
        overrides = dict(parameters)
        label = draw_label(overrides)
        prefix = tune.get_context().get_trial_id()
        if sweep.epochs:
            overrides["epochs"] = sweep.epochs
    config = resolve_config(sweep.preset, overrides=overrides)
    run_dir = trial_folder(out, prefix, label)
    run_dir.mkdir(parents=True, exist_ok=True)
    from ferlab.training import fit

    fit(config, faces, run_dir, progress=False, log=lambda _: None,
        on_epoch=lambda row: tune.report({"val_accuracy": row["val_accuracy"], "epoch": row["epoch"],
                                          "label": label, "run": str(run_dir)}))


def param_space(sweep: Sweep) -> dict:
    from ray import tune

    if sweep.trials:
        return {"trial": tune.grid_search(list(range(len(sweep.trials))))}
    makers = {"uniform": lambda a: tune.uniform(*a), "loguniform": lambda a: tune.loguniform(*a),
              "choice": lambda a: tune.choice(a)}
    return {key: makers[kind](arguments) for key, (kind, arguments) in sweep.random.items()}


RESULTS = ("results.json", "table.md")  # what a sweep writes into its folder (and trials/, its runs)


def is_sweep_record(record) -> bool:
    return isinstance(record, list) and all(isinstance(row, dict) and "publictest" in row for row in record)


def check_results_folder(out: Path) -> None:
    """``out`` holds none of a sweep's results, or an earlier sweep's (replaced)."""
    from ferlab.runs import check_results_folder as check

    check(out, RESULTS, is_sweep_record, "ferlab tune")


def run_sweep(sweep: Sweep, faces, out: Path, *, log=print) -> list[dict]:
    """Every trial on Ray Tune (ASHA if asked), ranked by best PublicTest accuracy; also written as
    ``OUT/table.md`` and ``OUT/results.json``."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no console tables: ferlab prints its own
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    epochs = sweep.epochs or resolve_config(sweep.preset).epochs
    scheduler = None if not sweep.asha else ASHAScheduler(
        time_attr="epoch", max_t=epochs, grace_period=int(sweep.asha.get("grace", 1)),
        reduction_factor=float(sweep.asha.get("reduction", 3)))
    check_results_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    trainable = tune.with_resources(tune.with_parameters(train_trial, sweep=sweep, faces=faces, out=out.resolve()),
                                    sweep.resources)
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)  # failed trials are in the table, with their errors
    tuner = tune.Tuner(trainable, param_space=param_space(sweep),
                       tune_config=tune.TuneConfig(metric="val_accuracy", mode="max", scheduler=scheduler,
                                                   num_samples=1 if sweep.trials else sweep.samples),
                       run_config=tune.RunConfig(name="tune", storage_path=str((out / "ray").resolve()), verbose=0))
    grid = tuner.fit()
    rows = [trial_row(result, epochs, sweep) for result in grid]
    rows.sort(key=lambda r: (r["error"] is not None, -(r["publictest"] or 0)))
    write_table(rows, sweep, out)
    return rows


def trial_row(result, epochs: int, sweep: Sweep) -> dict:
    """A trial's line of the table: its best PublicTest epoch, or its error."""
    history = result.metrics_dataframe
    if result.error is not None or history is None or history.empty:
        config = result.config or {}
        label = sweep.trials[config["trial"]]["label"] if "trial" in config else draw_label(config)
        first = str(result.error).strip().splitlines()[-1] if result.error is not None else "no epoch finished"
        return {"label": str(label), "publictest": None, "best_epoch": None, "epochs": 0, "run": None,
                "error": first[:300]}
    best = history.loc[history["val_accuracy"].idxmax()]
    return {"label": str(history["label"].iloc[-1]), "publictest": float(best["val_accuracy"]),
            "best_epoch": int(best["epoch"]), "epochs": int(history["epoch"].max()), "of": epochs,
            "run": str(history["run"].iloc[-1]), "error": None}


def run_sweep_locally(sweep: Sweep, faces, out: Path, *, parallel: int, log=print, poll: float = 0.5) -> list[dict]:
    """``run_sweep`` without Ray: each variant or grid point trains in its own process
    (``python -m ferlab.sweep``), ``parallel`` at a time; ranked and written as ``run_sweep``'s.
    Each trial's output goes to ``OUT/trials/<trial>.log``."""
    if not sweep.trials:
        raise FerlabError("a random search needs Ray (ferlab[ray]); without it, list variants or a grid")
    if sweep.asha:
        raise FerlabError("ASHA early stopping needs Ray (ferlab[ray]); without it, leave asha out")
    check_results_folder(out)
    if parallel < 1:
        raise FerlabError(f"--local needs at least 1 trial at a time, got {parallel}")
    out = out.resolve()
    from ferlab.data.cache import write_faces

    write_faces(out / "faces.pt", faces)  # decoded once, read by every trial
    try:
        rows = run_trials(sweep, out, parallel, log, poll)
    finally:
        (out / "faces.pt").unlink()
    rows.sort(key=lambda r: (r["error"] is not None, -(r["publictest"] or 0)))
    write_table(rows, sweep, out, runner="local processes")
    return rows


def run_trials(sweep: Sweep, out: Path, parallel: int, log, poll: float) -> list[dict]:
    """Every trial as a process reading OUT/faces.pt, ``parallel`` at a time; their rows, unsorted."""
    pending, running, rows = list(range(len(sweep.trials))), [], []
    while pending or running:
        while pending and len(running) < parallel:
            index = pending.pop(0)
            label, overrides, prefix = trial_overrides(sweep, index)
            run_dir = trial_folder(out, prefix, label)
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            output = open(run_dir.with_name(run_dir.name + ".log"), "w")
            command = [sys.executable, "-m", "ferlab.sweep", sweep.preset, json.dumps(overrides), str(out / "faces.pt"),
                       str(run_dir)]
            running.append((subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT), index, run_dir, output))
            log(f"started {label}")
        time.sleep(poll)
        for finished in [r for r in running if r[0].poll() is not None]:
            running.remove(finished)
            process, index, run_dir, output = finished
            output.close()
            label, overrides, _ = trial_overrides(sweep, index)
            rows.append(local_trial_row(label, run_dir, process.returncode,
                                        resolve_config(sweep.preset, overrides=overrides).epochs))
            log(f"finished {label}: " + (f"failed: {rows[-1]['error']}" if rows[-1]["error"]
                                         else f"PublicTest {rows[-1]['publictest']:.4f}"))
    return rows


def local_trial_row(label: str, run_dir: Path, returncode: int, epochs: int) -> dict:
    """A local trial's line of the table, from its history.csv, or the last line of its log."""
    history = run_dir / "history.csv"
    rows = []
    if history.exists():
        with open(history) as file:
            rows = list(csv.DictReader(file))
    if returncode != 0 or not rows:
        lines = run_dir.with_name(run_dir.name + ".log").read_text(errors="replace").strip().splitlines()
        error = lines[-1] if lines else f"exit code {returncode}"
        return {"label": label, "publictest": None, "best_epoch": None, "epochs": 0, "run": None, "error": error[:300]}
    best = max(rows, key=lambda row: float(row["val_accuracy"]))  # the first of equals, as training keeps it
    return {"label": label, "publictest": float(best["val_accuracy"]), "best_epoch": int(best["epoch"]),
            "epochs": len(rows), "of": epochs, "run": str(run_dir), "error": None}


def train_one_trial(preset: str, overrides: str, faces_file: str, run_dir: str) -> None:
    """A local trial's process: train ``preset`` with the JSON ``overrides`` on the faces of
    ``faces_file`` into ``run_dir`` (PrivateTest is not evaluated)."""
    from ferlab.data.cache import read_faces
    from ferlab.training import fit

    config = resolve_config(preset, overrides=json.loads(overrides))
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    fit(config, read_faces(Path(faces_file)), Path(run_dir), progress=False)


def write_table(rows: list[dict], sweep: Sweep, out: Path, runner: str = "Ray Tune") -> None:
    lines = [f"Sweep of preset {sweep.preset} on {runner}{' with ASHA' if sweep.asha else ''}: ranked by best "
             "PublicTest accuracy (PrivateTest not evaluated)", "",
             "| trial | PublicTest % | best epoch / epochs run | run folder |", "| --- | --- | --- | --- |"]
    for row in rows:
        if row["error"]:
            lines.append(f"| {row['label']} | failed: {row['error']} | | |")
        else:
            stopped = " (stopped by ASHA)" if row["epochs"] < row["of"] else ""
            lines.append(f"| {row['label']} | {100 * row['publictest']:.2f} | {row['best_epoch']}/{row['epochs']}{stopped} "
                         f"| {Path(row['run']).relative_to(out.resolve())} |")
    write_text(out / "table.md", "\n".join(lines) + "\n")
    write_text(out / "results.json", json.dumps(rows, indent=1))


def describe(rows: list[dict]) -> str:
    best = next((r for r in rows if not r["error"]), None)
    failed = sum(1 for r in rows if r["error"])
    text = f"{len(rows)} trials" + (f", {failed} failed" if failed else "")
    if best:
        text += f"; best on PublicTest: {best['label']} {100 * best['publictest']:.2f}% (epoch {best['best_epoch']})"
    return text


if __name__ == "__main__":  # one trial of run_sweep_locally; its last line is the error, if any
    try:
        train_one_trial(*sys.argv[1:])
    except FerlabError as error:
        print(error)
        sys.exit(2)
