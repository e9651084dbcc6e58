"""Photo latency and batch throughput on the CPU (or whatever device torch picks).

    python benchmarks/photos.py [--model default] [--repeats 10]

Prints the median latency per photo for detection + classification, and with the explanation
``--explain`` lays over faces (Grad-CAM; occlusion for an ONNX graph or an ensemble), on the photos
that ship with installed packages, and for a checkpoint the throughput of batch prediction on 48x48
faces (a graph's: ``benchmarks/exported.py``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from ferlab.checkpoint import load_model
from ferlab.evaluation import infer
from ferlab.explain import get_spec
from ferlab.faces import detect_faces, read_photo, to_gray
from ferlab.photos import analyze, demo_photos


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    loaded = load_model(args.model, graphs=True)
    explained_by = get_spec(loaded.overlay_method).title  # Grad-CAM, or occlusion for a graph or an ensemble
    rows = []
    for path in demo_photos():
        rgb = read_photo(path)
        faces = len(analyze(loaded, rgb))
        label = f"{path.name} ({rgb.shape[1]}x{rgb.shape[0]}, {faces} face)"
        rows.append((label, "read + detect", median_seconds(lambda: detect_faces(to_gray(read_photo(path))), args.repeats)))
        rows.append((label, "read + detect + classify", median_seconds(lambda: analyze(loaded, read_photo(path)), args.repeats)))
        rows.append((label, f"... + {explained_by} (--explain)",
                     median_seconds(lambda: analyze(loaded, read_photo(path), explain=True), args.repeats)))
    faces = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4096, 48, 48), dtype=np.uint8))
    throughput = {}
    for precision in (False, True) if not loaded.is_graph else ():  # a graph: benchmarks/exported.py
        seconds = median_seconds(lambda: infer(loaded.model, faces, loaded.normalization, batch_size=512,
                                               mixed_precision=precision), max(3, args.repeats // 3))
        throughput["bf16" if precision else "fp32"] = len(faces) / seconds
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}; torch {torch.__version__}; model {args.model} ({loaded.config.model}); "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| photo | step | median latency (ms) |\n| --- | --- | --- |")
    for label, step, seconds in rows:
        print(f"| {label} | {step} | {1000 * seconds:.1f} |")
    print("\n| batch prediction, 48x48 faces, batch 512 | images/s |\n| --- | --- |")
    for precision, rate in throughput.items():
        print(f"| {precision} | {rate:.0f} |")


if __name__ == "__main__":
    main()
