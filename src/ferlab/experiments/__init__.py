"""The assignment's questions as reproducible experiments: ``ferlab experiment NAME``.

An experiment is a small YAML file (the ones beside this module, or any path):

    name: augmentation
    question: How much does augmentation help?
    base: {preset: cpu}                    # TrainConfig keys (and a preset) shared by every arm
    budgets:                               # what each budget changes; `train_limit` caps training faces
      cpu: {epochs: 4}
      gpu: {epochs: 30}
    arms:                                  # one row of the table each
      - {label: "off", augment: false}
      - {label: "flip only", rotate: 0, shift: 0, shear: 0, zoom: 0}
    baseline: "off"                        # the arm the others are compared with (default: the first)
    max_param_ratio: 1.1                   # optional: fail if the arms' sizes differ by more
    confusions: true                       # optional: most-confused pairs of the best run, with faces

Every arm is trained on Training (optionally capped), its epoch chosen on PublicTest, and both
PublicTest and PrivateTest accuracy are reported, as mean ± std over the seeds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ferlab.checkpoint import load_model
from ferlab.config import ConfigError, parse_yaml, read_text_file, resolve_config
from ferlab.data.faceset import FaceSet
from ferlab.errors import FerlabError, brief
from ferlab.evaluation import metrics
from ferlab.labels import SPLITS
from ferlab.models import build_model, count_parameters
from ferlab.outputs import write_text
from ferlab.runs import write_json
from ferlab.training import fit

EXPERIMENTS_DIR = Path(__file__).resolve().parent
MAX_SEEDS = 100  # runs per arm: the tables use 2-3; 1e20 was an OverflowError after the data was read
BUDGETS = ("cpu", "gpu")


@dataclass(frozen=True)
class Experiment:
    name: str
    question: str
    base: dict
    budgets: dict
    arms: tuple[dict, ...]
    baseline: str
    max_param_ratio: float | None = None  # arms' parameter counts may differ by at most this factor
    confusions: bool = False              # also show the best run's most-confused pairs with example faces

    def config_for(self, arm: dict, budget: str, seed: int):
        values = {**self.base, **self.budgets.get(budget, {}), **{k: v for k, v in arm.items() if k != "label"}}
        values.pop("train_limit", None)
        preset = values.pop("preset", None)
        try:
            return resolve_config(preset, overrides={**values, "seed": seed})
        except ConfigError as error:
            raise FerlabError(f"experiment {self.name}, arm {arm['label']!r}: {error}") from None

    def train_limit(self, budget: str) -> int | None:
        return {**self.base, **self.budgets.get(budget, {})}.get("train_limit")


def list_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml")) if EXPERIMENTS_DIR.exists() else []


def load_experiment(name_or_path: str) -> Experiment:
    path = Path(name_or_path)
    if not path.suffix:
        path = EXPERIMENTS_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise FerlabError(f"unknown experiment {name_or_path!r}; available: {', '.join(list_experiments()) or 'none'}")
    data = parse_yaml(read_text_file(path), path) or {}
    if not isinstance(data, dict):
        raise FerlabError(f"{path}: expected a mapping with name, question, base, budgets and arms")
    unknown = sorted(set(data) - {"name", "question", "base", "budgets", "arms", "baseline", "max_param_ratio",
                                  "confusions"})
    if unknown:
        raise FerlabError(f"{path}: unknown key {unknown[0]!r}")
    arms = check_arms(data.get("arms"), path)
    budgets = check_budgets(data.get("budgets", {}), path)
    base = data.get("base", {})
    if not isinstance(base, dict):
        raise FerlabError(f"{path}: base must be a mapping of TrainConfig keys to values, got {brief(base)}")
    baseline = str(data.get("baseline", arms[0]["label"]))
    if baseline not in [arm["label"] for arm in arms]:
        raise FerlabError(f"{path}: baseline {brief(baseline)} is not an arm's label; the labels: "
                          f"{', '.join(repr(arm['label']) for arm in arms)}")
    ratio = data.get("max_param_ratio")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 1 <= ratio < float("inf")):
        raise FerlabError(f"{path}: max_param_ratio must be a number of at least 1, got {brief(ratio)}")
    experiment = Experiment(str(data.get("name", path.stem)), str(data.get("question", "")), base, budgets, arms,
                            baseline, ratio, bool(data.get("confusions", False)))
    for arm in arms:  # resolve every arm now: a typo fails before hours of training
        for budget in BUDGETS:
            experiment.config_for(arm, budget, 0)
    check_parameter_ratio(experiment)
    return experiment


def check_arms(arms, path: Path) -> tuple[dict, ...]:
    """A definition's arms: a non-empty list of mappings, each with a text label of its own that
    names a run folder of its own (``flip only`` -> ``flip-only-seed0``), or one FerlabError
    naming the file."""
    if not isinstance(arms, list) or not arms or not all(isinstance(arm, dict) and "label" in arm for arm in arms):
        raise FerlabError(f"{path}: needs arms, a list of mappings each with a label")
    folders: dict[str, str] = {}
    for arm in arms:
        label = arm["label"]
        if isinstance(label, bool) or not isinstance(label, (str, int, float)) or not str(label).strip():
            hint = " (YAML reads off, no, yes and on as true or false: quote the label)" if isinstance(label, bool) else ""
            raise FerlabError(f"{path}: an arm's label must be text, got {brief(label)}{hint}")
        label = str(label)
        folder = run_folder(Path(), label, 0).name
        if "/" in label or "\\" in label or "\0" in label or label.strip(".") == "" or len(folder.encode()) > 200:
            raise FerlabError(f"{path}: arm label {brief(label)} cannot name a run folder (no /, \\, NUL or dots alone; "
                              "200 bytes at most)")
        if folder.casefold() in folders:  # also apart from case: two folders of one name on some file systems
            raise FerlabError(f"{path}: arms {brief(folders[folder.casefold()])} and {brief(label)} would share a run folder")
        folders[folder.casefold()] = label
    return tuple({**arm, "label": str(arm["label"])} for arm in arms)


def check_budgets(budgets, path: Path) -> dict:
    """A definition's budgets: a mapping of known budgets to mappings of overrides."""
    if not isinstance(budgets, dict):
        raise FerlabError(f"{path}: budgets must be a mapping of {' and '.join(BUDGETS)} to overrides, got {brief(budgets)}")
    unknown_budgets = sorted(map(str, set(budgets) - set(BUDGETS)))
    if unknown_budgets:
        raise FerlabError(f"{path}: unknown budget {unknown_budgets[0]!r}; budgets are {', '.join(BUDGETS)}")
    for budget, overrides in budgets.items():
        if not isinstance(overrides, dict):
            raise FerlabError(f"{path}: budget {budget} must be a mapping of TrainConfig keys to values, got {brief(overrides)}")
    return budgets


def check_parameter_ratio(experiment: Experiment) -> dict[str, int]:
    """Parameter count per arm; raises if ``max_param_ratio`` is set and exceeded."""
    counts = {}
    for arm in experiment.arms:
        config = experiment.config_for(arm, "cpu", 0)
        counts[arm["label"]] = count_parameters(build_model(config.model, **config.model_options))
    if experiment.max_param_ratio:
        ratio = max(counts.values()) / min(counts.values())
        if ratio > experiment.max_param_ratio:
            raise FerlabError(f"experiment {experiment.name}: parameter counts {counts} differ by {ratio:.2f}x, "
                              f"more than the {experiment.max_param_ratio}x this comparison allows")
    return counts


def cap_training(faces: FaceSet, limit: int | None, seed: int = 0) -> FaceSet:
    """Keep ``limit`` randomly chosen training faces (the same ones for every arm); all
    validation and test faces stay."""
    if not limit:
        return faces
    train = (faces.splits == SPLITS.index("train")).nonzero().flatten()
    keep = torch.ones(len(faces), dtype=torch.bool)
    keep[train[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[limit:]]] = False
    return faces.select(keep)


def run_folder(out_dir: Path, label: str, seed: int) -> Path:
    return out_dir / "runs" / f"{label.replace(' ', '-')}-seed{seed}"


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def train_one(experiment: Experiment, arm: dict, budget: str, seed: int, faces: FaceSet, out_dir: Path,
              progress: bool = False, threads: int | None = None) -> dict:
    """One arm, one seed: train into its run folder and measure PublicTest and PrivateTest. A
    pure job of its arguments, so it runs the same here or as a Ray task (``threads``: PyTorch's
    intra-op threads, the caller's, so that sums run in the same order wherever the job runs)."""
    if threads:
        torch.set_num_threads(threads)
    config = experiment.config_for(arm, budget, seed)
    run_dir = run_folder(out_dir, arm["label"], seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    history = fit(config, faces, run_dir, progress=progress, log=lambda _: None)["history"]
    loaded = load_model(run_dir, device=config.device)
    accuracy = {split: metrics(loaded.logits(faces.split(split).images), faces.split(split).labels)["accuracy"]
                for split in ("val", "test")}
    return {"seed": seed, "val": accuracy["val"], "test": accuracy["test"], "seconds": time.perf_counter() - started,
            "history": history}


def run_sequentially(experiment: Experiment, faces: FaceSet, out_dir: Path, jobs: list[tuple[dict, int]],
                     budget: str, progress: bool, done: Callable[[dict, int, dict], None]) -> list[dict]:
    """Each (arm, seed) job in turn; ``done`` hears of each as it ends."""
    finished = []
    for arm, seed in jobs:
        finished.append(train_one(experiment, arm, budget, seed, faces, out_dir, progress))
        done(arm, seed, finished[-1])
    return finished


def run_on_ray(experiment: Experiment, faces: FaceSet, out_dir: Path, jobs: list[tuple[dict, int]],
               budget: str, progress: bool, done: Callable[[dict, int, dict], None]) -> list[dict]:
    """Every (arm, seed) job as a Ray task (``ferlab.scale``), on the cluster ``ray_session`` joined."""
    from ferlab.scale import gpu_share, run_tasks

    return run_tasks(train_one, [(experiment, arm, budget, seed) for arm, seed in jobs], shared=(faces, out_dir),
                     gpus=gpu_share(), done=lambda args, run: done(args[1], args[3], run))


RUNNERS = {"sequential": run_sequentially, "ray": run_on_ray}


RESULTS = ("results.json", "results.md", "curves.png", "confusions.png")  # what an experiment writes into its folder


def check_results_folder(out_dir: Path, experiment: Experiment) -> None:
    """``out_dir`` holds none of an experiment's results, or this experiment's own (replaced)."""
    from ferlab.runs import check_results_folder as check

    check(out_dir, RESULTS, lambda record: isinstance(record, dict) and record.get("experiment") == experiment.name,
          f"experiment {experiment.name}")


def seed_list(count: int) -> list[int]:
    """Seeds 0..count-1 for ``--seeds count``, 1 to MAX_SEEDS of them (0 was an IndexError after the data was read)."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_SEEDS:
        raise FerlabError(f"--seeds {brief(count)}: expected a number of seeds from 1 to {MAX_SEEDS}")
    return list(range(count))


def run_experiment(experiment: Experiment, faces: FaceSet, out_dir: Path, *, seeds: list[int], budget: str,
                   progress: bool = False, log: Callable[[str], None] = print, runner: str = "sequential") -> dict:
    """Train every arm for every seed (``runner``: one after another, or as Ray tasks); write
    results.json, results.md and curves.png."""
    from ferlab.report.figures import plot_arms

    if not seeds or len(set(seeds)) != len(seeds):  # no seed was an IndexError; a seed twice, one run counted twice
        raise FerlabError(f"seeds {brief(seeds)}: expected one or more distinct seeds")
    check_results_folder(out_dir, experiment)
    out_dir.mkdir(parents=True, exist_ok=True)
    faces = cap_training(faces, experiment.train_limit(budget))
    parameters = check_parameter_ratio(experiment)
    results: dict[str, Any] = {"experiment": experiment.name, "question": experiment.question, "budget": budget,
                               "seeds": seeds, "training_faces": len(faces.split("train")), "arms": {}}
    jobs = [(arm, seed) for arm in experiment.arms for seed in seeds]

    def done(arm: dict, seed: int, run: dict) -> None:
        log(f"{experiment.name} / {arm['label']} / seed {seed}: PublicTest {run['val']:.4f}, "
            f"PrivateTest {run['test']:.4f} ({run['seconds']:.0f}s)")

    finished = RUNNERS[runner](experiment, faces, out_dir, jobs, budget, progress, done)
    for arm in experiment.arms:
        config = experiment.config_for(arm, budget, seeds[0])
        runs = [run for (job_arm, _), run in zip(jobs, finished) if job_arm is arm]
        results["arms"][arm["label"]] = {"parameters": parameters[arm["label"]], "epochs": config.epochs,
                                         "model": config.model, "runs": runs}
    if experiment.confusions:
        results["confusions"] = confusion_examples(results, faces, out_dir)
    write_json(out_dir / "results.json", results)
    plot_arms({label: [r["history"] for r in arm["runs"]] for label, arm in results["arms"].items()},
              out_dir / "curves.png", f"{experiment.name} ({budget} budget, {len(seeds)} seed{'s' * (len(seeds) > 1)})")
    write_text(out_dir / "results.md", results_markdown(experiment, results))
    return results


def confusion_examples(results: dict, faces: FaceSet, out_dir: Path, pairs: int = 4, per_pair: int = 8) -> list[dict]:
    """The best run's (by PublicTest) most-confused PrivateTest pairs, with example faces."""
    from ferlab.labels import EMOTIONS
    from ferlab.report.figures import plot_face_grid

    label, seed = max(((label, r["seed"], r["val"]) for label, arm in results["arms"].items() for r in arm["runs"]),
                      key=lambda item: item[2])[:2]
    loaded = load_model(run_folder(out_dir, label, seed))
    test = faces.split("test")
    logits = loaded.logits(test.images)
    confused = metrics(logits, test.labels)["most_confused"][:pairs]
    predictions = logits.argmax(1)
    images, captions = [], []
    for pair in confused:
        true, predicted = EMOTIONS.index(pair["true"]), EMOTIONS.index(pair["predicted"])
        chosen = ((test.labels == true) & (predictions == predicted)).nonzero().flatten()[:per_pair]
        images.append(test.images[chosen])
        captions += [f"{pair['true']}→{pair['predicted']}"] * len(chosen)
    plot_face_grid(torch.cat(images), captions, out_dir / "confusions.png",
                   f"most-confused PrivateTest pairs of the best run ({label}, seed {seed}): true→predicted",
                   columns=per_pair)
    return [{**pair, "run": f"{label} seed {seed}"} for pair in confused]


def results_markdown(experiment: Experiment, results: dict) -> str:
    arms = results["arms"]
    epochs = {a["epochs"] for a in arms.values()}
    lines = [f"### {experiment.name}: {experiment.question}", "",
             f"Budget `{results['budget']}`: {'/'.join(map(str, sorted(epochs)))} epochs, "
             f"{results['training_faces']:,} training faces; seeds {', '.join(map(str, results['seeds']))}. "
             "Epoch chosen on PublicTest; PrivateTest reported once.", "",
             "| arm | model | parameters | PublicTest % | PrivateTest % | time per run (s) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for label, arm in arms.items():
        val = mean_std([100 * r["val"] for r in arm["runs"]])
        test = mean_std([100 * r["test"] for r in arm["runs"]])
        seconds = mean_std([r["seconds"] for r in arm["runs"]])
        lines.append(f"| {label} | {arm['model']} | {arm['parameters']:,} | {val[0]:.2f} ± {val[1]:.2f} | "
                     f"{test[0]:.2f} ± {test[1]:.2f} | {seconds[0]:.0f} |")
    lines += ["", *summary_sentences(experiment, results), ""]
    if results.get("confusions"):
        lines += ["Most-confused pairs on PrivateTest (share of the true class), best run "
                  f"({results['confusions'][0]['run']}):", ""]
        lines += [f"- {p['true']} → {p['predicted']}: {100 * p['rate']:.1f}% ({p['count']} faces)"
                  for p in results["confusions"]] + [""]
    return "\n".join(lines)


def summary_sentences(experiment: Experiment, results: dict) -> list[str]:
    """One sentence per arm against the baseline, saying only what the numbers support."""
    arms = results["arms"]
    base = arms[experiment.baseline]
    base_test = [100 * r["test"] for r in base["runs"]]
    sentences = []
    for label, arm in arms.items():
        if label == experiment.baseline:
            continue
        differences = [100 * r["test"] - b for r, b in zip(arm["runs"], base_test)]
        mean, spread = mean_std(differences)
        n = len(differences)
        # With a handful of seeds this is a rough screen, not a significance test: say which side
        # of twice the seed-to-seed spread the difference falls.
        verdict = ("one seed: no spread to judge it by" if n == 1 else
                   "more than twice the spread between seeds" if abs(mean) > 2 * spread else
                   "within twice the spread between seeds: not distinguishable here")
        sentences.append(f"- **{label}** vs **{experiment.baseline}**: {mean:+.2f} ± {spread:.2f} points on PrivateTest "
                         f"over {n} seed{'s' * (n > 1)} ({verdict}).")
    return sentences


PUBLISHED_HEADER = "# Experiment results\n\nGenerated by `ferlab experiment NAME --publish`"


def check_publish_folder(destination: Path) -> None:
    """``destination`` holds no RESULTS.md, or one that ``publish`` wrote (it is rebuilt): a
    RESULTS.md of the user's was replaced without a word."""
    from ferlab.outputs import read_small_text

    summary = destination / "RESULTS.md"
    if summary.exists() and not (read_small_text(summary) or "").startswith(PUBLISHED_HEADER):
        raise FerlabError(f"{summary}: not written by ferlab experiment --publish, and would be replaced; "
                          "choose another --publish folder")


def publish(out_dir: Path, results: dict, destination: Path, device: str) -> Path:
    """Copy an experiment's table and plots into ``destination/<name>/`` and rebuild
    ``destination/RESULTS.md`` from every published experiment."""
    import shutil

    check_publish_folder(destination)

    target = destination / f"{results['experiment']}-{results['budget']}"  # each budget keeps its own table
    target.mkdir(parents=True, exist_ok=True)
    text = (out_dir / "results.md").read_text()
    stamp = f"Measured on {device}, {time.strftime('%Y-%m-%d')}.\n\n"
    write_text(target / "results.md", text.replace("\n\n", "\n\n" + stamp, 1))
    for name in ("curves.png", "confusions.png"):
        if (out_dir / name).exists():
            shutil.copyfile(out_dir / name, target / name)
    sections = []
    for published in sorted(destination.glob("*/results.md")):
        body = published.read_text()
        images = "".join(f"\n![{published.parent.name} {png.stem}]({published.parent.name}/{png.name})\n"
                         for png in sorted(published.parent.glob("*.png")))
        sections.append(body + images)
    header = (f"{PUBLISHED_HEADER}. Each table: trained on "
              "Training, epoch chosen on PublicTest, PrivateTest reported once; mean ± std over seeds.\n\n")
    notes = destination / "NOTES.md"  # hand-written remarks (e.g. runs that did not finish), kept at the end
    footer = "\n" + notes.read_text() if notes.exists() else ""
    write_text(destination / "RESULTS.md", header + "\n".join(sections) + footer)
    return destination / "RESULTS.md"
