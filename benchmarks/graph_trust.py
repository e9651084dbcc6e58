"""The report's trust stage on an ONNX graph, with PyTorch on all its threads and on one
(``LoadedModel.threads``, which a graph sets to ``graph.one_torch_thread``), alternating in one run.

    python benchmarks/graph_trust.py GRAPH.onnx [--rounds 3] [--data ../shared/data/fer2013/fer2013-sample.tar.gz]

The trust stage runs LIME and occlusion on the graph through onnxruntime, PyTorch doing the
arithmetic around it; its idle threads spin after each operation and take onnxruntime's cores.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from pathlib import Path

from ferlab.checkpoint import load_model
from ferlab.data import load_faces
from ferlab.graph import GraphModel
from ferlab.report.build import ReportOptions, Stages, layer_variants, trust_results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("graph")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", default="../shared/data/fer2013/fer2013-sample.tar.gz")
    args = parser.parse_args()
    test = load_faces(Path(args.data), use_cache=False).split("test")
    graph, options = load_model(args.graph, graphs=True), ReportOptions()
    settings = {"all threads": lambda self: contextlib.nullcontext(), "one thread": GraphModel.threads}
    seconds = {name: [] for name in settings}
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {os.environ.get('OMP_NUM_THREADS')} "
          f"OMP threads; trust stage of {args.graph}, {options.trust_faces_per_class} faces per class")
    for _ in range(args.rounds):
        for name, threads in settings.items():
            GraphModel.threads = threads
            started = time.perf_counter()
            trust_results(graph, test, options, Stages(False, lambda message: None), layer_variants(graph.model, options))
            seconds[name].append(time.perf_counter() - started)
            print(f"{name}: {seconds[name][-1]:.2f} s", flush=True)
    median = {name: sorted(values)[len(values) // 2] for name, values in seconds.items()}
    print(f"median: {median['all threads']:.2f} s on all threads, {median['one thread']:.2f} s on one "
          f"({median['one thread'] / median['all threads']:.2f}x)")


if __name__ == "__main__":
    main()
