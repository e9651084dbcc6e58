"""Presets over several seeds, on the official protocol: train on Training, keep the epoch with the
best PublicTest accuracy, report PrivateTest once. Prints one markdown table (and writes it as JSON
with --json), with a row for each preset's seeds combined as an ensemble, and a column for each
run's PrivateTest with the test-time augmentation that scored best on PublicTest.

    python benchmarks/presets.py --presets fast best --seeds 0 1 2            # on a GPU
    python benchmarks/presets.py --presets fast --seeds 0 1 --epochs 2 --train-limit 4000   # CPU, reduced
    python benchmarks/presets.py --ensemble families --seeds 0                # one member of each family

``--ensemble NAME`` trains the presets of ``ferlab.config.ENSEMBLES[NAME]`` (of different families)
and adds a row combining every run of them.

Wall time per run covers loading the data (from the warm cache), building the model, training with
per-epoch validation and checkpoints, and the final evaluation; the process's one-off CUDA start-up
is done before the first run. An ensemble's time is the sum of its members' runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ferlab.checkpoint import export_checkpoint, load_model, read_checkpoint
from ferlab.config import ENSEMBLES, resolve_config
from ferlab.data import load_faces
from ferlab.ensemble import combine, fit_weights
from ferlab.experiments import cap_training, mean_std
from ferlab.training import choose_device, fit
from ferlab.tta import choose_tta

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "fer2013-images.tar.xz"
SPLITS = ("val", "test")  # PublicTest, PrivateTest
TTAS = ("none", "flip", "flip-zoom", "ten-crop")  # test-time augmentation policies reported side by side


def key(split: str, tta: str) -> str:
    return split if tta == "none" else f"{split}_{tta}"


def accuracy(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    return float((probabilities.argmax(1) == labels).double().mean())


def run_once(preset: str, seed: int, args, keep: Path | None, threads: int | None = None) -> dict:
    """Train one seed; return its accuracies and the class probabilities it gives each split
    (``threads``: PyTorch's threads, set when the run is a Ray task)."""
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    faces = cap_training(load_faces(args.data), args.train_limit)
    config = resolve_config(preset, overrides={"seed": seed, "epochs": args.epochs})
    with tempfile.TemporaryDirectory() as folder:
        summary = fit(config, faces, Path(folder), progress=False, log=lambda _: None)
        probabilities = probabilities_of(load_model(folder, device=config.device), faces)
        wall = time.perf_counter() - started
        if keep is not None:
            export_checkpoint(read_checkpoint(Path(folder) / "best.pt"), keep / f"{preset}-seed{seed}.pt")
            shutil.copy(Path(folder) / "history.csv", keep / f"{preset}-seed{seed}-history.csv")
    labels = {split: faces.split(split).labels for split in SPLITS}
    images = len(faces.split("train")) // config.batch_size * config.batch_size * summary["epochs"]
    return with_chosen_tta({"seed": seed, "wall": wall, "images_per_second": images / summary["train_seconds"],
                            "epochs": summary["epochs"], "best_epoch": summary["best_epoch"],
                            "probabilities": probabilities, "labels": labels,
                            **{key(split, tta): accuracy(p, labels[split]) for (split, tta), p in probabilities.items()}})


def probabilities_of(loaded, faces) -> dict:
    """(split, policy) -> the class probabilities ``loaded`` gives that split's faces under each of
    TTAS (ten-crop: windows of its training crop; each distinct view inferred once)."""
    return {(split, tta): logits.softmax(1) for split in SPLITS
            for tta, logits in loaded.logits_by_policy(faces.split(split).images, TTAS).items()}


def with_chosen_tta(row: dict) -> dict:
    """``row`` with the policy that scored best on PublicTest (``tta``) and PrivateTest with it."""
    chosen = choose_tta({tta: row[key("val", tta)] for tta in TTAS})
    return {**row, "tta": chosen, "test_chosen": row[key("test", chosen)]}


def ensemble_row(runs: list[dict]) -> dict:
    """The runs' probabilities averaged (equal weights), and with weights fitted on PublicTest; the
    policy is chosen on PublicTest with equal weights."""
    labels = runs[0]["labels"]
    row = {"wall": sum(r["wall"] for r in runs)}
    for tta in TTAS:
        members = {split: [r["probabilities"][(split, tta)] for r in runs] for split in SPLITS}
        weights = fit_weights(members["val"], labels["val"])
        for split in SPLITS:
            row[key(split, tta)] = accuracy(combine(members[split]), labels[split])
            row[f"{key(split, tta)}_fitted"] = accuracy(combine(members[split], weights), labels[split])
    return with_chosen_tta(row)


def seeds_on_ray(preset: str, args) -> list[dict]:
    """Every seed of ``preset`` as a Ray task (the members of its ensemble), in seed order."""
    from ferlab.scale import gpu_share, ray_session, run_tasks

    with ray_session():
        return run_tasks(run_once, [(preset, seed, args, args.keep) for seed in args.seeds], gpus=gpu_share())


def mean_std_text(values: list[float], scale: float = 1.0) -> str:
    mean, spread = mean_std([v * scale for v in values])
    return f"{mean:.2f} ± {spread:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--presets", nargs="+", default=["fast", "best"])
    parser.add_argument("--ensemble", choices=sorted(ENSEMBLES), help="train this ensemble's presets (instead of "
                                                                      "--presets) and add a row combining all their runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override the presets' epochs (reduced runs)")
    parser.add_argument("--train-limit", type=int, default=None, help="use only this many training faces (reduced runs)")
    parser.add_argument("--keep", type=Path, help="folder for each run's fp16 best checkpoint and history.csv")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--ray", action="store_true", help="train the seeds (an ensemble's members) as Ray tasks "
                                                           "(a quarter GPU each), on a Ray started here or RAY_ADDRESS")
    args = parser.parse_args()
    if args.ensemble:
        args.presets = list(ENSEMBLES[args.ensemble])
    load_faces(args.data)  # decode once so every run starts from the warm cache
    device = choose_device("auto")
    torch.zeros(1, device=device)  # the process's CUDA start-up, once, outside the timed runs
    name = torch.cuda.get_device_name() if device.type == "cuda" else (platform.processor() or "cpu")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    rows = []
    for preset in args.presets:
        runs = []
        trained = seeds_on_ray(preset, args) if args.ray else (run_once(preset, seed, args, args.keep) for seed in args.seeds)
        for seed, r in zip(args.seeds, trained):
            accuracies = " ".join(f"{key(split, tta)} {r[key(split, tta)]:.4f}" for split in SPLITS for tta in TTAS)
            print(f"{preset} seed {seed}: {accuracies} best epoch {r['best_epoch']}/{r['epochs']} wall {r['wall']:.1f}s "
                  f"{r['images_per_second']:.0f} img/s", flush=True)
            runs.append(r)
        rows.append((preset, runs, ensemble_row(runs) if len(runs) > 1 else None))
    everything = [run for _, runs, _ in rows for run in runs]
    across = ensemble_row(everything) if args.ensemble else None
    reduced = [f"{args.epochs} epochs"] * bool(args.epochs) + [f"{args.train_limit} training faces"] * bool(args.train_limit)
    header = (f"device: {name}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}"
              f"{'; REDUCED: ' + ', '.join(reduced) if reduced else ''}")
    print(f"\n{header}\n")
    columns = [key(split, tta) for split in ("test", "val") for tta in TTAS]
    titles = [f"{'PrivateTest' if split == 'test' else 'PublicTest'} %{'' if tta == 'none' else f' ({tta} TTA)'}"
              for split in ("test", "val") for tta in TTAS]
    titles.append("PrivateTest % with the TTA chosen on PublicTest (policies chosen)")
    print(f"| preset | seeds | {' | '.join(titles)} | wall time per run (s) | images/s (training) | device |")
    print("| --- " * (len(titles) + 5) + "|")
    for preset, runs, ensemble in rows:
        cells = " | ".join(mean_std_text([r[column] for r in runs], 100) for column in columns)
        chosen = ", ".join(sorted({r["tta"] for r in runs}))
        print(f"| {preset} | {len(runs)} | {cells} | {mean_std_text([r['test_chosen'] for r in runs], 100)} ({chosen}) "
              f"| {mean_std_text([r['wall'] for r in runs])} | {statistics.mean(r['images_per_second'] for r in runs):.0f} "
              f"| {name} |")
        if ensemble:
            print(ensemble_line(f"{preset}: ensemble of the {len(runs)} seeds", ensemble, columns, len(runs), name))
    if across:
        print(ensemble_line(f"ensemble {args.ensemble}: all {len(everything)} runs of {', '.join(args.presets)}", across,
                            columns, len(everything), name))
    if args.json:
        plain = [{"preset": preset, "ensemble": ensemble,
                  "runs": [{k: v for k, v in r.items() if k not in ("probabilities", "labels")} for r in runs]}
                 for preset, runs, ensemble in rows]
        args.json.write_text(json.dumps({"header": header, "rows": plain, "ensemble": across}, indent=1))


def ensemble_line(title: str, ensemble: dict, columns: list[str], members: int, device: str) -> str:
    cells = " | ".join(f"{100 * ensemble[column]:.2f} / {100 * ensemble[column + '_fitted']:.2f}" for column in columns)
    return (f"| {title}, equal / PublicTest-fitted weights | {members} | {cells} "
            f"| {100 * ensemble['test_chosen']:.2f} ({ensemble['tta']}, equal weights) | {ensemble['wall']:.1f} in all "
            f"| | {device} |")


if __name__ == "__main__":
    main()
