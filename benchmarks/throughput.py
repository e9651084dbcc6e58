"""Batch inference throughput on this machine: faces/s of the one inference path every command
takes (``LoadedModel.logits``: normalisation, bf16 autocast where the CPU has it, channels-last),
for the shipped model and any other models, side by side in one run, rounds interleaved so that
a busy moment hurts every model alike. Also each model's PrivateTest accuracy, as evaluated.

    python benchmarks/throughput.py [MODEL ...] [--faces 4096] [--batch 512] [--rounds 3] [--threads 2] [--tta POLICY]

``--tta``: every model infers with that test-time augmentation (its views are part of the time).

MODEL: run folders, checkpoints, ONNX graphs of `ferlab export` or 'default' (the default list is 'default' alone).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from ferlab.checkpoint import load_model
from ferlab.data import load_faces

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "fer2013-images.tar.xz"


def faces_per_second(loaded, faces: torch.Tensor, batch: int, tta: str = "none") -> float:
    started = time.perf_counter()
    loaded.logits(faces, tta=tta, batch_size=batch)
    return len(faces) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=["default"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--faces", type=int, default=4096, help="faces per timed pass")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per model (the best is reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tta", default="none", help="test-time augmentation every model infers with")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faces = load_faces(args.data)
    test = faces.split("test")
    pool = faces.split("train").images[: args.faces]
    models = {name: load_model(name, device="cpu", graphs=True) for name in args.models}  # ONNX graphs too
    for loaded in models.values():
        faces_per_second(loaded, pool[: args.batch], args.batch, args.tta)  # warm-up: allocations, kernel choice
    speeds: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, loaded in models.items():
            speeds[name].append(faces_per_second(loaded, pool, args.batch, args.tta))
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}; {len(pool)} faces in batches of {args.batch}, best of {args.rounds} rounds; "
          f"test-time augmentation: {args.tta}\n")
    print("| model | architecture | parameters | faces/s | PrivateTest % |\n| --- | --- | --- | --- | --- |")
    for name, loaded in models.items():
        accuracy = float((loaded.logits(test.images, tta=args.tta).argmax(1) == test.labels).double().mean())
        print(f"| {name} | {architecture(loaded)} | {max(speeds[name]):,.0f} | {100 * accuracy:.2f} |")


def architecture(loaded) -> str:
    """The model's architecture and size; for an ONNX graph, what it was exported from and its precision."""
    if loaded.is_graph:
        precision = "int8" if "int8" in loaded.checkpoint["quantization"] else "float32"
        return f"ONNX {precision} graph of {loaded.checkpoint['architecture']} (onnxruntime) | –"
    parameters = sum(p.numel() for p in loaded.model.parameters())
    return (f"{loaded.config.model} {loaded.config.model_options or ''} crop {loaded.config.crop} | "
            f"{parameters / 1e6:.2f} M")


if __name__ == "__main__":
    main()
