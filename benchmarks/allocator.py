"""What reusing freed memory (``ferlab.device.reuse_freed_memory``) buys on this CPU: the `cpu`
preset's training step and batch inference of the shipped model and the main job's net, with
malloc as glibc leaves it and with freed memory kept, side by side.

    python benchmarks/allocator.py [--rounds 3] [--steps 20] [--faces 4096] [--threads 2]

The setting is for a whole process and cannot be taken back, so each measurement is a fresh
process (``FERLAB_REUSE_MEMORY=0`` or ``1``), rounds interleaved so that a busy moment hurts both
alike; each row is the median of the rounds, with the page faults per step or per batch. The
training step's weights are hashed after the timed steps: both settings must give the same bits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "fer2013-images.tar.xz"
SETTINGS = {"0": "malloc as glibc leaves it", "1": "freed memory reused (ferlab's default)"}


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure_training(data: Path, steps: int) -> dict:
    """Images/s and page faults per step of the cpu preset's step, and a hash of the weights after."""
    import torch

    from ferlab.config import resolve_config
    from ferlab.data import load_faces
    from ferlab.training import start_training, train_one_epoch

    train = load_faces(data).split("train")
    config = resolve_config("cpu")
    model, optimizer, normalization, *_ = start_training(config, train.images, torch.device("cpu"), None)
    generator = torch.Generator().manual_seed(0)

    def run(count: int) -> dict:
        count = max(1, min(count, len(train) // config.batch_size))
        chosen = slice(0, count * config.batch_size)
        return train_one_epoch(model, optimizer, train.images[chosen], train.labels[chosen], config=config,
                               normalization=normalization, generator=generator, lr_for_step=lambda step: 1e-3,
                               progress=False) | {"images": count * config.batch_size, "steps": count}

    run(3)  # warm-up: the heap grows to the step's working set once
    faults = minor_faults()
    stats = run(steps)
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().float().numpy().tobytes())
    return {"per_second": stats["images"] / stats["seconds"], "faults": (minor_faults() - faults) / stats["steps"],
            "weights": digest.hexdigest()[:16]}


def measure_inference(model_name: str, data: Path, faces: int, batch: int) -> dict:
    """Faces/s and page faults per batch of ``model_name``'s one inference path."""
    from ferlab.checkpoint import load_model
    from ferlab.data import load_faces
    from throughput import faces_per_second  # benchmarks/: the script's own folder

    pool = load_faces(data).split("train").images[:faces]
    loaded = load_model(model_name, device="cpu")
    faces_per_second(loaded, pool[:batch], batch)  # warm-up
    faults = minor_faults()
    speed = faces_per_second(loaded, pool, batch)
    return {"per_second": speed, "faults": (minor_faults() - faults) / -(-len(pool) // batch)}


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.measure == "train":
        result = measure_training(args.data, args.steps)
    else:
        result = measure_inference(args.measure, args.data, args.faces, args.batch)
    print(json.dumps(result))


def measure_in_a_fresh_process(args: argparse.Namespace, measure: str, setting: str) -> dict:
    command = [sys.executable, __file__, "--child", measure, "--data", str(args.data), "--steps", str(args.steps),
               "--faces", str(args.faces), "--batch", str(args.batch), "--threads", str(args.threads)]
    result = subprocess.run(command, env={**os.environ, "FERLAB_REUSE_MEMORY": setting}, capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"allocator.py: {measure} with FERLAB_REUSE_MEMORY={setting} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per process")
    parser.add_argument("--faces", type=int, default=4096, help="faces per timed inference pass")
    parser.add_argument("--batch", type=int, default=512, help="inference batch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["default"], help="models for batch inference")
    parser.add_argument("--child", dest="measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return child(args)
    measures = {"train": "training step of the cpu preset (images/s)",
                **{name: f"batch inference of {name} (faces/s, batch {args.batch})" for name in args.models}}
    results = {(m, s): [] for m in measures for s in SETTINGS}
    for _ in range(args.rounds):
        for measure in measures:
            for setting in SETTINGS:
                results[measure, setting].append(measure_in_a_fresh_process(args, measure, setting))
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads, {time.strftime('%Y-%m-%d')}; "
          f"each row the median of {args.rounds} fresh processes, interleaved\n")
    print(f"| measure | malloc | per second (median of {args.rounds}) | page faults per step or batch | vs glibc's |\n"
          "| --- | --- | --- | --- | --- |")
    for measure, title in measures.items():
        baseline = statistics.median(r["per_second"] for r in results[measure, "0"])
        for setting, name in SETTINGS.items():
            rows = results[measure, setting]
            speed = statistics.median(r["per_second"] for r in rows)
            print(f"| {title} | {name} | {speed:,.0f} | {statistics.median(r['faults'] for r in rows):,.0f} | "
                  f"{speed / baseline:.2f}x |")
    hashes = {setting: {r["weights"] for r in results["train", setting]} for setting in SETTINGS}
    same = len(hashes["0"] | hashes["1"]) == 1
    print(f"\nweights after the timed training steps: {'the same bits' if same else 'DIFFERENT'} under both settings "
          f"({', '.join(sorted(hashes['0'] | hashes['1']))})")


if __name__ == "__main__":
    main()
