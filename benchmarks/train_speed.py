"""Training images/s of the `cpu` preset's step (Muon) with random crops, shrunk views (progressive
resizing's early epochs), the other model families and AdamW (the preset's optimiser until 2026-11-24),
side by side in one run on the real Training faces (augmentation, bf16 autocast where the CPU has
it, optimiser step included).

    python benchmarks/train_speed.py [--steps 15] [--threads 2] [--rounds 1] [--only 0 7]

--only picks variants by their index in VARIANTS (0, the preset, is always the baseline); with
--rounds R they run interleaved R times and each row is its median, steadier on a busy machine.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from ferlab.config import resolve_config
from ferlab.data import load_faces
from ferlab.training import start_training, train_one_epoch, view_side_at

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "fer2013-images.tar.xz"
STEM_THEN_NORM = {"model_options": {"stem": True, "pool_first": False}}  # fastnet as the preset had it until 2026-11-24
VARIANTS = ({}, {"crop": 44}, {"crop": 40}, {"views": 2, "crop": 40}, {"model": "fastnet-full"},
            {"model": "vgg8", "crop": 40}, {"model": "resnet18", "crop": 40}, STEM_THEN_NORM, {"optimizer": "adamw"},
            {"progressive_start": 40, "progressive_epochs": 1}, {"progressive_start": 32, "progressive_epochs": 1},
            {"batch_size": 128, "lr": 3e-3})  # the preset's batch until 2026-11-24 (seventh session)


def images_per_second(overrides: dict, images: torch.Tensor, labels: torch.Tensor, steps: int,
                      optimizer_options: dict | None = None) -> float:
    """Images/s of the cpu preset's step with config ``overrides`` (and ``optimizer_options`` set on
    every parameter group), after a warm-up."""
    config = resolve_config("cpu", overrides=overrides)
    model, optimizer, normalization, *_ = start_training(config, images, torch.device("cpu"), None)
    for group in optimizer.param_groups:
        group.update(optimizer_options or {})
    generator = torch.Generator().manual_seed(0)

    def run(count: int) -> float:
        chosen = images[: count * config.batch_size], labels[: count * config.batch_size]
        stats = train_one_epoch(model, optimizer, *chosen, config=config, normalization=normalization,
                                generator=generator, lr_for_step=lambda step: 1e-3, progress=False,
                                side=view_side_at(0, config))  # progressive resizing: its first epoch
        return count * config.batch_size * config.views / stats["seconds"]

    run(3)  # warm-up
    return run(steps)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", type=int, nargs="+", choices=range(len(VARIANTS)), default=list(range(len(VARIANTS))))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = load_faces(args.data).split("train")
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}; preset cpu (batch {resolve_config('cpu').batch_size} faces), {args.steps} timed steps each\n")
    chosen = [VARIANTS[0]] + [VARIANTS[i] for i in args.only if i != 0]
    speeds = [[images_per_second(overrides, train.images, train.labels, args.steps) for overrides in chosen]
              for _ in range(args.rounds)]
    print(f"| variant | images/s (median of {args.rounds}) | faces/s | vs the preset |\n| --- | --- | --- | --- |")
    baseline = statistics.median(row[0] for row in speeds)
    for index, overrides in enumerate(chosen):
        speed = statistics.median(row[index] for row in speeds)
        views = overrides.get("views", 1)
        print(f"| cpu preset {overrides or ''} | {speed:.0f} | {speed / views:.0f} | {speed / baseline:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
