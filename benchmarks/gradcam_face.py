"""Grad-CAM of one face, as the camera and ``photo --explain`` ask for it, with the conv layers'
sizes probed once per model (``explain.common.layer_sides``) and probed again on every call (as
before they were kept), alternating in one run.

    python benchmarks/gradcam_face.py [--model default] [--calls 200] [--rounds 3]
                                      [--data ../shared/data/fer2013/fer2013-sample.tar.gz]

The probe is a forward pass of a blank face; the default layer (the deepest with maps of at least
6x6) is chosen from its sizes.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from ferlab.checkpoint import load_model
from ferlab.data import load_faces
from ferlab.explain import common


def per_call(function, calls: int) -> float:
    """Milliseconds per call of ``function`` (after one call to warm up)."""
    function()
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", default="../shared/data/fer2013/fer2013-sample.tar.gz")
    args = parser.parse_args()
    loaded = load_model(args.model, device="cpu")
    face = load_faces(Path(args.data)).split("test").images[:1]  # a real face: its map is a real one
    target = loaded.logits(face).argmax(1)

    def explain() -> None:
        loaded.explain("gradcam", face, target)

    def explain_probing() -> None:
        common._PROBED_SIDES.clear()  # what every call did before the sizes were kept
        explain()

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} threads; Grad-CAM of one face with {args.model} ({loaded.config.model})")
    timings = {"probed on every call": [], "probed once": []}
    for _ in range(args.rounds):
        timings["probed on every call"].append(per_call(explain_probing, args.calls))
        timings["probed once"].append(per_call(explain, args.calls))
    for name, values in timings.items():
        print(f"{name:22s} {statistics.median(values):6.2f} ms per face (rounds: "
              f"{', '.join(f'{v:.2f}' for v in values)})")
    ratio = statistics.median(timings["probed on every call"]) / statistics.median(timings["probed once"])
    print(f"probed once: {ratio:.2f}x the faces per second")


if __name__ == "__main__":
    main()
