"""Training images/s of the `cpu` preset's step with random crops and the other model families,
side by side in one run on the real Training faces (augmentation, bf16 autocast where the CPU has
it, optimiser step included).

    python benchmarks/train_speed.py [--steps 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from ferlab.config import resolve_config
from ferlab.data import load_faces
from ferlab.training import start_training, train_one_epoch

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "fer2013-images.tar.xz"
VARIANTS = ({}, {"crop": 44}, {"crop": 40}, {"views": 2, "crop": 40}, {"model": "fastnet-full"},
            {"model": "vgg8", "crop": 40}, {"model": "resnet18", "crop": 40})


def images_per_second(overrides: dict, images: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    config = resolve_config("cpu", overrides=overrides)
    model, optimizer, normalization, _, _ = start_training(config, images, torch.device("cpu"), None)
    generator = torch.Generator().manual_seed(0)

    def run(count: int) -> float:
        chosen = images[: count * config.batch_size], labels[: count * config.batch_size]
        stats = train_one_epoch(model, optimizer, *chosen, config=config, normalization=normalization,
                                generator=generator, lr_for_step=lambda step: 1e-3, progress=False)
        return count * config.batch_size * config.views / stats["seconds"]

    run(3)  # warm-up
    return run(steps)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = load_faces(args.data).split("train")
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}; preset cpu (batch 128 faces), {args.steps} timed steps each\n")
    print("| variant | images/s | faces/s | vs the preset |\n| --- | --- | --- | --- |")
    baseline = None
    for overrides in VARIANTS:
        speed = images_per_second(overrides, train.images, train.labels, args.steps)
        baseline = baseline or speed
        views = overrides.get("views", 1)
        print(f"| cpu preset {overrides or ''} | {speed:.0f} | {speed / views:.0f} | {speed / baseline:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
