"""What spreading costs on one small machine: the Ray path of ``ferlab experiment`` against the
sequential one, and 2-process DDP training (torchrun, Gloo) against one process, on the sample.

    python benchmarks/scale.py [--data ../shared/data/fer2013/fer2013-sample.tar.gz] [--seeds 2]

Each is a fresh ``ferlab`` process timed from start to exit (Ray's start-up and torchrun's
rendezvous included), one after the other in one run. On 2 cores this measures overhead, not
speed-up: the point of Ray and DDP is more cores and more machines.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_scale import TINY  # noqa: E402 - the tests' two-arm experiment

EXPERIMENT = TINY.replace("epochs: 1,", "epochs: 2,")  # two epochs a run here


def timed(*command: str) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/data/fer2013/fer2013-sample.tar.gz")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    ferlab = [sys.executable, "-m", "ferlab"]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "tiny.yaml").write_text(EXPERIMENT)
        experiment = [*ferlab, "experiment", str(folder / "tiny.yaml"), "--seeds", str(args.seeds), "--data", args.data,
                      "--quiet"]
        sequential = timed(*experiment, "--out", str(folder / "sequential"))
        on_ray = timed(*experiment, "--ray", "--out", str(folder / "ray"))
        train = ["train", "--preset", "smoke", "--epochs", str(args.epochs), "--data", args.data, "--quiet"]
        one = timed(*ferlab, *train, "--out", str(folder / "one"))
        two = timed(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                    "-m", "ferlab", *train, "--out", str(folder / "two"))
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; the 420-face sample")
    print("| job | path | seconds | ratio |")
    print("| --- | --- | --- | --- |")
    jobs = 2 * args.seeds
    print(f"| experiment, 2 arms x {args.seeds} seeds ({jobs} runs of 2 epochs) | sequential | {sequential:.1f} | 1.00 |")
    print(f"| | Ray (local, started by the command) | {on_ray:.1f} | {on_ray / sequential:.2f} |")
    print(f"| train --preset smoke, {args.epochs} epochs | 1 process | {one:.1f} | 1.00 |")
    print(f"| | torchrun, 2 processes (Gloo) | {two:.1f} | {two / one:.2f} |")


if __name__ == "__main__":
    main()
