"""Run folders: where a training run leaves everything a person needs to read it.

    config.yaml      the resolved configuration          history.csv   one row per epoch
    curves.png       loss and accuracy per epoch          best.pt, last.pt  checkpoints
    metrics.json     summary: best epoch, val and test accuracy, times, the TTA chosen on PublicTest
    eval-<split>[-tta-<policy>].json, confusion-<split>.png, misclassified-<split>.png   from evaluation
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import yaml

from ferlab.checkpoint import LoadedModel, is_shipped_name, resolve_checkpoint
from ferlab.config import TrainConfig, config_to_dict
from ferlab.data.faceset import FaceSet
from ferlab.errors import FerlabError
from ferlab.evaluation import format_metrics, metrics
from ferlab.labels import EMOTIONS
from ferlab.outputs import read_small_json, same_file, write_text, written
from ferlab.tta import TTA_POLICIES, choose_tta, uses_windows
from ferlab.calibration import reliability


# The folders the running command made (``made_folders``), shallow to deep; None outside one.
_MADE_FOLDERS: contextvars.ContextVar[list[Path] | None] = contextvars.ContextVar("ferlab_made_folders", default=None)


@contextlib.contextmanager
def removed_if_left_empty() -> Iterator[None]:
    """Around a command: the folders it made (``make_folder``) and left empty (or holding only
    the OWNER_FILE that claimed them) are removed when it fails, so a typo in an input leaves no
    ``runs/eval-default`` or ``photo-results`` behind. Folders that were there before, or that
    hold anything else, are never touched."""
    made: list[Path] = []
    token = _MADE_FOLDERS.set(made)
    try:
        yield
    except BaseException:
        for folder in reversed(made):  # deepest first
            with contextlib.suppress(OSError):
                left = list(folder.iterdir())
                if all(entry.name == OWNER_FILE and entry.is_file() for entry in left):
                    for entry in left:
                        entry.unlink()
                    folder.rmdir()
        raise
    finally:
        _MADE_FOLDERS.reset(token)


def make_folder(path: Path) -> None:
    """``path.mkdir(parents=True, exist_ok=True)``, noting each folder it makes for
    ``removed_if_left_empty``."""
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    path.mkdir(parents=True, exist_ok=True)
    made = _MADE_FOLDERS.get()
    if made is not None:
        made.extend(reversed(missing))


def new_run_dir(root: Path, model: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{model}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = root / f"{model}-{stamp}-{suffix}"
    make_folder(path)
    return path


def writable_folder(path: Path) -> Path:
    """``path`` as a folder this process can write into (created if missing), checked before any
    work is done; a one-line FerlabError otherwise (an existing file, a read-only folder)."""
    if path.exists() and not path.is_dir():
        raise FerlabError(f"{path}: exists and is not a folder; choose another output folder")
    try:
        make_folder(path)
        probe = path / f".ferlab-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise FerlabError(f"{path}: cannot write here ({error.strerror or error})") from None
    return path


def writable_file(path: Path) -> Path:
    """``path`` as a file this process can (over)write, checked before any work is done."""
    if path.is_dir():
        raise FerlabError(f"{path}: is a folder; name a file to write")
    writable_folder(path.parent if str(path.parent) else Path("."))
    if path.exists() and not os.access(path, os.W_OK):
        raise FerlabError(f"{path}: cannot overwrite (permission denied)")
    return path


def check_not_an_input(output: Path, inputs) -> None:
    """An output that is one of the command's inputs, by any path to it, would replace what is being
    read (``predict x.png -o x.png`` wrote a CSV over the photo): one FerlabError before any work."""
    for source in map(Path, inputs):
        if same_file(output, source):
            raise FerlabError(f"{output}: is also an input ({source}) and would be replaced; name another output")


def files_named(folder: Path, patterns) -> list[Path]:
    """The files of ``folder`` that match ``patterns`` (names or globs), in the patterns' order."""
    return [path for pattern in patterns for path in sorted(folder.glob(pattern))]


def check_results_folder(out: Path, outputs: tuple[str, ...], ours, what: str) -> None:
    """A folder that a command writes ``outputs`` into holds none of them, or holds its own earlier
    results (``results.json``, whose content ``ours`` recognises): a user's ``results.md`` in
    ``experiment --out`` was replaced without a word."""
    present = files_named(out, outputs)
    if present and not ours(read_small_json(out / "results.json")):
        raise FerlabError(f"{present[0]}: not written by {what}, and would be replaced; choose another --out")


def check_suffix(output: Path, suffix: str, what: str) -> None:
    """An output is named for what is written into it: a file of another kind (``predict -o
    photo.png``, ``ensemble -o notes.txt``) was replaced by a CSV or a checkpoint."""
    if output.suffix.lower() != suffix:
        raise FerlabError(f"{output}: {what}; name the file *{suffix}")


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


OWNER_FILE = "ferlab-model.txt"  # in an output folder of a checkpoint file: the model whose figures it holds
RUN_CHECKPOINTS = ("best.pt", "last.pt")


def model_identity(checkpoint: Path, shipped_name: str | None = None) -> str:
    """Which model a command's figures are of: a shipped model by its name (the next release's
    ``default`` writes where this one's did), a run's checkpoint by its run folder, else the file."""
    if shipped_name:
        return shipped_name
    checkpoint = checkpoint.resolve()
    return str(checkpoint.parent if checkpoint.name in RUN_CHECKPOINTS else checkpoint)


def ensemble_identity(sources: list[str]) -> str:
    """``model_identity`` of the ensemble of ``sources``: its folder is its own to write again,
    whatever order its members are given in."""
    members = (model_identity(resolve_checkpoint(source), str(source) if is_shipped_name(source) else None)
               for source in sources)
    return "ensemble of " + ", ".join(sorted(members))


def folder_owner(folder: Path) -> str | None:
    """The model whose figures ``folder`` holds (``model_identity``): a run folder's own, else what
    its OWNER_FILE names; None for a new or empty folder."""
    if any((folder / name).is_file() for name in RUN_CHECKPOINTS):
        return str(folder.resolve())
    owner = folder / OWNER_FILE
    lines = owner.read_text(errors="replace").strip().splitlines() if owner.is_file() else []
    return lines[0].strip() if lines else None


FIGURE_OUTPUTS = ("metrics.json", "eval-*.json", "confusion-*.png", "misclassified-*.png", "reliability-*.png",
                  "curves.png", "report.html", "report-timings.json", "explanations.png", "feature-maps.png",
                  "filters.png", "trust*.json", "trust*.png", "explain-*.png")  # what evaluate, report, explain, ensemble write


def check_owner(folder: Path, model: str | None = None, name: str | None = None) -> None:
    """Refuse to write into ``folder`` when it holds another model's figures than ``model``'s (a
    run folder, or outputs its OWNER_FILE claims): its metrics.json or eval-*.json would be replaced.
    A folder no model claims may hold other files, but none of FIGURE_OUTPUTS' names (a metrics.json
    of the user's was read as ours: a JSONDecodeError, or merged into)."""
    owner = folder_owner(folder)
    if owner is not None and owner != model:
        raise FerlabError(f"{folder}: holds the figures of {owner}" + (f", not of {name}" if name else "")
                          + "; choose another output folder")
    taken = files_named(folder, FIGURE_OUTPUTS) if owner is None else []
    if taken:
        raise FerlabError(f"{taken[0]}: not written by ferlab for a model, and would be replaced; choose another output folder")


def claim_folder(folder: Path, model: str) -> None:
    """Mark ``folder`` as holding ``model``'s figures (a run folder is its run's already)."""
    if folder_owner(folder) != model:
        write_text(folder / OWNER_FILE, f"{model}\n")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def write_config(run_dir: Path, config: TrainConfig, data_info: dict) -> None:
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    write_text(run_dir / "config.yaml", f"# resolved training config; data: {data_info.get('source')}\n{text}")


def labelled_split(faces: FaceSet, split: str) -> FaceSet:
    subset = faces.split(split)
    if len(subset) == 0:
        raise FerlabError(f"{faces.source}: no faces in split {split!r}")
    if not subset.labelled:
        raise FerlabError(f"{faces.source}: split {split!r} has no labels to evaluate against")
    return subset


def data_tag(source: str, trained_on: str | None) -> str:
    """"" for the data a model was trained on; else a tag naming ``source`` (its name and a hash of
    its full path), so evaluations on other data never overwrite each other or the model's own.
    A model trained elsewhere (the shipped one) names a path that does not exist here: then the
    same file name counts as the same data; so does the same file reached by another path."""
    if trained_on is None or source == trained_on:
        return ""
    if Path(trained_on).exists():
        if Path(source).exists() and os.path.samefile(source, trained_on):  # the same file by another path
            return ""
    elif Path(source).name == Path(trained_on.split(" (")[0]).name:  # the shipped card: "NAME (description)"
        return ""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source).name)[:40]
    return f"{name}-{hashlib.sha1(source.encode()).hexdigest()[:6]}"


def evaluation_name(split: str, tta: str = "none", tag: str = "") -> str:
    """eval-<split>[-tta-<policy>][-on-<data tag>]: one name per split, policy and data source."""
    return f"{split}{'' if tta == 'none' else f'-tta-{tta}'}{f'-on-{tag}' if tag else ''}"


def evaluate_split(loaded: LoadedModel, faces: FaceSet, split: str, run_dir: Path, *, tta: str = "none",
                   tag: str = "", progress: bool = False) -> dict:
    """Metrics of the loaded model on one split, written into ``run_dir`` (see write_evaluation);
    ``progress``: a bar on a terminal while the split is inferred."""
    subset = labelled_split(faces, split)
    logits = loaded.logits(subset.images, tta=tta, progress=faces.split_title(split) if progress else "")
    return write_evaluation(logits, subset, split, run_dir, tta=tta, tag=tag, temperature=loaded.temperature)


def choose_tta_on_public_test(loaded: LoadedModel, faces: FaceSet) -> tuple[str, dict[str, float], torch.Tensor]:
    """The test-time augmentation to report, chosen on PublicTest (never on PrivateTest): each
    policy the model can take is scored there and ``tta.choose_tta`` picks one. Returns (policy,
    policy -> PublicTest accuracy, the chosen policy's PublicTest logits)."""
    subset = labelled_split(faces, "val")
    policies = [policy for policy in TTA_POLICIES if not (uses_windows(policy) and loaded.window_problem)]
    logits = loaded.logits_by_policy(subset.images, policies)
    accuracies = {policy: metrics(logits[policy] / loaded.temperature, subset.labels)["accuracy"] for policy in policies}
    chosen = choose_tta(accuracies)
    return chosen, accuracies, logits[chosen]


def write_evaluation(logits: torch.Tensor, subset: FaceSet, split: str, out_dir: Path, *, tta: str = "none",
                     tag: str = "", gallery: int = 32, temperature: float = 1.0) -> dict:
    """From (N, 7) logits (or log-probabilities) of a split's faces: eval-<name>.json (named by
    ``evaluation_name``; it records the data source and the split), the confusion matrix, the
    reliability diagram (calibration before and after ``temperature``) and a gallery of the most
    confident mistakes. Returns the metrics, with the printable ``report``, the file ``name`` and
    the (calibrated) ``probabilities`` tensor added (only ``name`` goes into the JSON)."""
    raw = reliability(logits.softmax(1), subset.labels)
    logits = logits / temperature  # the probabilities every other command returns; labels unchanged
    result = metrics(logits, subset.labels)
    suffix = evaluation_name(split, tta, tag)
    title = subset.split_title(split) if tta == "none" else f"{subset.split_title(split)} + {tta} TTA"
    calibrated = reliability(logits.softmax(1), subset.labels)
    result.update({"split": split, "split_name": subset.split_title(split), "tta": tta, "source": subset.source,
                   "name": suffix, "calibration": {"temperature": temperature, "ece_before": raw["ece"],
                                                   "ece_after": calibrated["ece"], "reliability_before": raw,
                                                   "reliability_after": calibrated}})
    write_json(out_dir / f"eval-{suffix}.json", result)
    probabilities = logits.softmax(1)
    from ferlab.report.figures import plot_evaluation  # matplotlib only when drawing

    plot_evaluation(result, subset.images, subset.labels, probabilities, out_dir, title, gallery)
    result["report"] = format_metrics(result, title)
    result["probabilities"] = probabilities
    return result


def evaluation_entry(result: dict) -> dict:
    """What metrics.json keeps of one evaluation (``write_evaluation``'s result): enough to tell
    which data and split it was."""
    return {"data": result["source"], "split": result["split"], "split_name": result["split_name"],
            "tta": result["tta"], "accuracy": result["accuracy"], "macro_f1": result["macro_f1"], "count": result["count"]}


def write_submission(path: Path, ids, predictions: torch.Tensor, probabilities: torch.Tensor | None = None) -> None:
    """Kaggle format: ``id,label`` with the numeric label (0..6, the challenge's class order); with
    ``probabilities`` (N, 7), one more column per class, named by class."""
    with written(path) as temporary, open(temporary, "w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")  # quotes ids (paths) that hold commas
        writer.writerow(["id", "label", *(EMOTIONS if probabilities is not None else ())])
        for i, (face_id, label) in enumerate(zip(ids, predictions.tolist())):
            extra = [f"{p:.6f}" for p in probabilities[i].tolist()] if probabilities is not None else []
            writer.writerow([face_id, int(label), *extra])
