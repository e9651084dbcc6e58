"""Choose a recipe on PublicTest within a device budget: measure each variant's throughput, fit
the sweep into ``--budget`` seconds, then train the variants with ``ferlab tune``'s Ray Tune sweep
(``ferlab.sweep``; ``--parallel`` trials share the device; ``--local``: as processes, without Ray)
and rank them by best PublicTest accuracy. PrivateTest is never looked at here.

    python benchmarks/tune.py benchmarks/tune-gpu.yaml --parallel 8 --budget 420 --out tune-results [--local]

The YAML names a preset and variants (TrainConfig overrides). A variant may give
``seconds: S`` instead of ``epochs``: it then gets as many epochs as its measured throughput alone
fits into S seconds. First every variant's training throughput is measured alone (a few steps each);
if the sweep's work would not fit ``--budget`` seconds of the device, every variant's epochs shrink
by the same factor (printed), so the ranking is at a shorter schedule than asked.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
import yaml

from ferlab.config import resolve_config
from ferlab.data import load_faces
from ferlab.distill import load_teachers
from ferlab.scale import ray_session
from ferlab.sweep import Sweep, run_sweep, run_sweep_locally
from ferlab.training import choose_device, start_training

from pipeline import time_ferlab  # benchmarks/pipeline.py, beside this script

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "fer2013-images.tar.xz"


def throughput(config, faces, steps: int = 25) -> float:
    """Training images per second of ``config`` alone on the device (the pipeline benchmark's timing),
    its teachers' forward passes included for a student."""
    device = choose_device(config.device)
    train = faces.split("train")
    teachers = load_teachers(config.teachers, device) if config.teachers else None  # a student's step includes theirs
    model, optimizer, normalization, *_ = start_training(config, train.images, device, resume_from=None,
                                                           teachers=teachers)
    return config.batch_size / time_ferlab(model, optimizer, config, normalization, train.images, train.labels,
                                           device, steps, teachers=teachers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--parallel", type=int, default=4, help="variants trained at once (they share the GPU)")
    parser.add_argument("--budget", type=float, default=600, help="device seconds the whole sweep may take")
    parser.add_argument("--out", type=Path, default=Path("tune-results"))
    parser.add_argument("--local", action="store_true", help="without Ray: the variants as --parallel processes here "
                                                              "(a GPU machine without internet has no Ray)")
    args = parser.parse_args()
    spec = yaml.safe_load(args.sweep.read_text())
    preset, variants = spec["preset"], spec["variants"]
    faces = load_faces(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    jobs, speeds, work = [], {}, 0.0
    for variant in variants:
        overrides = {k: v for k, v in variant.items() if k not in ("label", "seconds")}
        config = resolve_config(preset, overrides=overrides)
        speeds[variant["label"]] = speed = throughput(config, faces)
        if "seconds" in variant:
            overrides["epochs"] = max(1, math.floor(variant["seconds"] * speed / len(faces.split("train"))))
            config = resolve_config(preset, overrides=overrides)
        overrides.setdefault("epochs", config.epochs)
        seconds = config.epochs * len(faces.split("train")) / speed
        work += seconds
        print(f"{variant['label']}: {speed:.0f} img/s alone, {config.epochs} epochs = {seconds:.0f} s alone", flush=True)
        jobs.append((variant["label"], preset, overrides, str(args.data)))
    # Running several at once is assumed no faster in total than one after another (conservative).
    shrink = min(1.0, args.budget / work)
    if shrink < 1.0:
        print(f"the sweep's {work:.0f} s exceed the budget of {args.budget:.0f} s: every variant's epochs x {shrink:.2f}")
        for _, _, overrides, _ in jobs:
            overrides["epochs"] = max(1, math.floor(overrides["epochs"] * shrink))
    started = time.perf_counter()
    share = {"cpu": max(1, (os.cpu_count() or 1) // args.parallel), "gpu": 0}
    if torch.cuda.is_available():
        share = {"cpu": 1, "gpu": 1 / args.parallel}  # --parallel trials on one GPU
    sweep = Sweep(preset, [{"label": label, **overrides} for label, _, overrides, _ in jobs], resources=share)
    if args.local:
        rows = run_sweep_locally(sweep, faces, args.out, parallel=args.parallel)
    else:
        with ray_session():
            rows = run_sweep(sweep, faces, args.out)
    results = []
    for row in rows:
        overrides = next(o for label, _, o, _ in jobs if label == row["label"])
        results.append({"label": row["label"], "overrides": overrides, "epochs": row["epochs"],
                        "best_epoch": row["best_epoch"], "publictest": row["publictest"] or 0.0,
                        "error": row["error"], "images_per_second_alone": speeds[row["label"]]})
        print(f"done {row['label']}: PublicTest {results[-1]['publictest']:.4f} at epoch {row['best_epoch']}/"
              f"{row['epochs']}" + (f" (failed: {row['error']})" if row["error"] else ""), flush=True)
    results.sort(key=lambda r: -r["publictest"])
    device = choose_device("auto")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    heading = (f"sweep {args.sweep.name} (preset {preset}) on {name}, torch {torch.__version__}, "
               f"{time.strftime('%Y-%m-%d')}; {time.perf_counter() - started:.0f} s with {args.parallel} at once; "
               f"ranked by best PublicTest accuracy (PrivateTest not evaluated)")
    lines = [heading, "",
             "| variant | PublicTest % | best epoch / epochs | images/s alone | overrides |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['label']} | {100 * r['publictest']:.2f} | {r['best_epoch']}/{r['epochs']} | "
              f"{r['images_per_second_alone']:.0f} | {json.dumps(r['overrides'])} |" for r in results]
    print("\n".join(lines))
    (args.out / "benchmark-table.md").write_text("\n".join(lines) + "\n")
    (args.out / "benchmark-results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
