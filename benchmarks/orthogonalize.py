"""Muon's orthogonalisation on the `cpu` preset's hidden matrices: the bf16 Newton-Schulz iteration
(as on a GPU) against its spectral form (what a CPU runs). Per matrix, on real gradients (one batch
of Training faces): time, and how far each lands from the iteration computed without rounding.
Then the whole training step's images/s with each, interleaved over --rounds.

    python benchmarks/orthogonalize.py [--repeats 20] [--steps 30] [--rounds 5] [--threads 2]
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
from ferlab.muon import hidden_matrices, newton_schulz, spectral
from ferlab.training import mixed_cross_entropy, start_training, training_batch
from train_speed import images_per_second  # benchmarks/: the script's own folder

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "fer2013-images.tar.xz"


def real_gradients(train) -> list[torch.Tensor]:
    """The hidden matrices' gradients after one batch of the cpu preset, as (rows, cols) matrices."""
    config = resolve_config("cpu")
    model, _, normalization, *_ = start_training(config, train.images, torch.device("cpu"), None)
    x, y, partner, keep = training_batch(train.images, train.labels, torch.arange(config.batch_size), config,
                                         normalization, torch.Generator().manual_seed(0))
    mixed_cross_entropy(model(x), y, config.label_smoothing, partner, keep).backward()
    return [p.grad.reshape(p.shape[0], -1) for p in hidden_matrices(model)]


def milliseconds(function, matrix: torch.Tensor, repeats: int) -> float:
    function(matrix)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        function(matrix)
    return (time.perf_counter() - started) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}; {args.repeats} repeats per matrix; steps of {args.steps} batches, "
          f"interleaved {args.rounds} times\n")
    print("| matrix | bf16 iteration ms | spectral ms | ratio | error of the bf16 iteration | error of spectral |")
    print("| --- | --- | --- | --- | --- | --- |")
    train = load_faces(args.data).split("train")
    totals, gradients = [0.0, 0.0], real_gradients(train)
    for gradient in gradients:
        exact = newton_schulz(gradient, dtype=torch.float32)
        times = [milliseconds(f, gradient, args.repeats) for f in (newton_schulz, spectral)]
        errors = [((f(gradient) - exact).norm() / exact.norm()).item() for f in (newton_schulz, spectral)]
        totals = [total + t for total, t in zip(totals, times)]
        print(f"| {tuple(gradient.shape)} | {times[0]:.2f} | {times[1]:.2f} | {times[1] / times[0]:.2f}x "
              f"| {errors[0]:.2%} | {errors[1]:.3%} |", flush=True)
    print(f"| **all {len(gradients)} (one step)** | {totals[0]:.1f} | {totals[1]:.1f} "
          f"| {totals[1] / totals[0]:.2f}x | | |")
    names = ("newton-schulz", "spectral")
    speeds = [[images_per_second({}, train.images, train.labels, args.steps, {"orthogonalizer": name}) for name in names]
              for _ in range(args.rounds)]
    print(f"\n| round | {' | '.join(f'{name} images/s' for name in names)} | spectral / newton-schulz |\n| --- | --- | --- | --- |")
    for index, (slow, fast) in enumerate(speeds):
        print(f"| {index + 1} | {slow:.0f} | {fast:.0f} | {fast / slow:.2f}x |")
    medians = [statistics.median(row[i] for row in speeds) for i in range(2)]
    ratios = sorted(fast / slow for slow, fast in speeds)
    print(f"| **median** | {medians[0]:.0f} | {medians[1]:.0f} | {statistics.median(ratios):.2f}x "
          f"(rounds {ratios[0]:.2f}-{ratios[-1]:.2f}x) |")


if __name__ == "__main__":
    main()
