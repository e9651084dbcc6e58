"""How fast the command line answers: ``ferlab --help``, each subcommand's ``--help`` and
``ferlab --version``, each in a fresh process (as a user types them).

    python benchmarks/startup.py [--repeats 5]

Prints the median wall time per command, and ``python -c 'import torch'`` beside them as the
baseline a command that imports PyTorch cannot beat.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

COMMANDS = [["--help"], ["--version"], ["train", "--help"], ["evaluate", "--help"], ["photo", "--help"],
            ["explain", "--help"], ["serve", "--help"], ["export", "--help"], ["summary", "--help"]]


def median_seconds(argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = [(f"ferlab {' '.join(c)}", median_seconds([sys.executable, "-m", "ferlab", *c], args.repeats)) for c in COMMANDS]
    rows.append(("baseline: python -c 'import torch'", median_seconds([sys.executable, "-c", "import torch"], args.repeats)))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; python "
          f"{platform.python_version()}; {time.strftime('%Y-%m-%d')}; median of {args.repeats}\n")
    print("| command | seconds |\n| --- | --- |")
    for name, seconds in rows:
        print(f"| `{name}` | {seconds:.2f} |")


if __name__ == "__main__":
    main()
