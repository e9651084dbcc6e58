"""Presets over several seeds, on the official protocol: train on Training, keep the epoch with the
best PublicTest accuracy, report PrivateTest once. Prints one markdown table.

    python benchmarks/presets.py --presets fast best --seeds 0 1 2            # on a GPU
    python benchmarks/presets.py --presets fast --seeds 0 1 --epochs 2 --train-limit 4000   # CPU, reduced

Wall time includes loading the data (from the cache when warm) and the final evaluation.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ferlab.checkpoint import load_model
from ferlab.config import resolve_config
from ferlab.data import load_faces
from ferlab.evaluation import infer, metrics
from ferlab.experiments import cap_training
from ferlab.training import choose_device, fit

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "fer2013-images.tar.xz"


def run_once(preset: str, seed: int, args) -> dict:
    started = time.perf_counter()
    faces = cap_training(load_faces(args.data), args.train_limit)
    config = resolve_config(preset, overrides={"seed": seed, "epochs": args.epochs})
    with tempfile.TemporaryDirectory() as folder:
        summary = fit(config, faces, Path(folder), progress=False, log=lambda _: None)
        loaded = load_model(folder)
        model = loaded.model.to(choose_device(config.device))
        results = {}
        for split in ("val", "test"):
            subset = faces.split(split)
            logits = infer(model, subset.images, loaded.normalization, tta=args.tta,
                           mixed_precision=config.mixed_precision, channels_last=config.channels_last)
            results[split] = metrics(logits, subset.labels)["accuracy"]
    wall = time.perf_counter() - started
    images = len(faces.split("train")) // config.batch_size * config.batch_size * summary["epochs"]
    return {"val": results["val"], "test": results["test"], "wall": wall, "images_per_second": images / summary["train_seconds"]}


def mean_std(values: list[float], scale: float = 1.0) -> str:
    values = [v * scale for v in values]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--presets", nargs="+", default=["fast", "best"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override the presets' epochs (reduced runs)")
    parser.add_argument("--train-limit", type=int, default=None, help="use only this many training faces (reduced runs)")
    parser.add_argument("--tta", action="store_true", help="flip test-time augmentation at evaluation")
    args = parser.parse_args()
    load_faces(args.data)  # decode once so every run starts from the warm cache
    device = choose_device("auto")
    name = torch.cuda.get_device_name() if device.type == "cuda" else (platform.processor() or "cpu")
    rows = []
    for preset in args.presets:
        runs = [run_once(preset, seed, args) for seed in args.seeds]
        for seed, r in zip(args.seeds, runs):
            print(f"{preset} seed {seed}: PublicTest {r['val']:.4f} PrivateTest {r['test']:.4f} wall {r['wall']:.1f}s")
        rows.append((preset, runs))
    reduced = []
    if args.epochs:
        reduced.append(f"{args.epochs} epochs")
    if args.train_limit:
        reduced.append(f"{args.train_limit} training faces")
    print(f"\ndevice: {name}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}"
          f"{'; REDUCED: ' + ', '.join(reduced) if reduced else ''}{'; flip TTA' if args.tta else ''}\n")
    print("| preset | seeds | PrivateTest % | PublicTest % | wall time per run (s) | images/s (training + per-epoch validation) | device |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for preset, runs in rows:
        print(f"| {preset} | {len(runs)} | {mean_std([r['test'] for r in runs], 100)} | {mean_std([r['val'] for r in runs], 100)} | "
              f"{mean_std([r['wall'] for r in runs])} | {statistics.mean(r['images_per_second'] for r in runs):.0f} | {name} |")


if __name__ == "__main__":
    main()
