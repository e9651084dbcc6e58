"""The report's trust stage on an ONNX graph, with PyTorch on all its threads and on one
(``LoadedModel.threads``, which a graph sets to ``graph.one_torch_thread``), alternating in one run;
with ``--compare check``, with the model-randomisation check (the graph's weights redrawn) and
without it, on one thread, alternating.

    python benchmarks/graph_trust.py GRAPH.onnx [--compare threads|check] [--rounds 3]
                                     [--data ../shared/data/fer2013/fer2013-sample.tar.gz]

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
from ferlab.explain import trust
from ferlab.graph import GraphModel
from ferlab.report.build import ReportOptions, Stages, layer_variants, trust_results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("graph")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", default="../shared/data/fer2013/fer2013-sample.tar.gz")
    parser.add_argument("--compare", choices=("threads", "check"), default="threads")
    args = parser.parse_args()
    test = load_faces(Path(args.data), use_cache=False).split("test")
    graph, options = load_model(args.graph, graphs=True), ReportOptions()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {os.environ.get('OMP_NUM_THREADS')} "
          f"OMP threads; trust stage of {args.graph}, {options.trust_faces_per_class} faces per class")
    if args.compare == "check":
        compare_check(graph, test, options, args.rounds)
        return
    settings = {"all threads": lambda self: contextlib.nullcontext(), "one thread": GraphModel.threads}
    seconds = {name: [] for name in settings}
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


def compare_check(graph, test, options: ReportOptions, rounds: int) -> None:
    """The trust stage with and without the randomisation check, alternating."""
    checked = trust.has_weights
    settings = {"without the check": lambda model: False, "with the check": checked}
    seconds = {name: [] for name in settings}
    for _ in range(rounds):
        for name, has_weights in settings.items():
            trust.has_weights = has_weights
            started = time.perf_counter()
            result = trust_results(graph, test, options, Stages(False, lambda message: None),
                                   layer_variants(graph.model, options))
            seconds[name].append(time.perf_counter() - started)
            rho = ", ".join(f"{r.method} {r.randomization_rho:.3f}" for r in result["results"])
            print(f"{name}: {seconds[name][-1]:.2f} s (rho: {rho})", flush=True)
    trust.has_weights = checked
    median = {name: sorted(values)[len(values) // 2] for name, values in seconds.items()}
    print(f"median: {median['without the check']:.2f} s without the check, {median['with the check']:.2f} s with it "
          f"({median['with the check'] / median['without the check']:.2f}x)")


if __name__ == "__main__":
    main()
