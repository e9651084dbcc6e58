"""How fast the command line answers: ``ferlab --help``, each subcommand's ``--help`` and
``ferlab --version``, and the first answer of a fresh process (``ferlab photo`` of a demo photo,
``Model.detect`` and ``Model.predict`` from Python), each in a fresh process, as a user types them.

    python benchmarks/startup.py [--repeats 5] [--baseline-src OTHER/src]

Prints the median wall time per command, and ``python -c 'import torch'`` beside them as the
baseline a command that imports PyTorch cannot beat. ``--baseline-src`` times the same commands
with another checkout's ``src`` first on ``PYTHONPATH`` (``git worktree add /tmp/old REV``), the
two interleaved round by round, and prints the ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = [["--help"], ["--version"], ["train", "--help"], ["evaluate", "--help"], ["photo", "--help"],
            ["explain", "--help"], ["serve", "--help"], ["export", "--help"], ["summary", "--help"]]
API = "import ferlab; model = ferlab.load('default-fast', device='cpu'); "
FIRST_ANSWERS = {  # label -> python arguments; each reads the shipped student and one demo photo
    "ferlab photo DEMO --model default-fast": ["-m", "ferlab", "photo", "--demo", "--model", "default-fast", "--quiet"],
    "Model.detect(DEMO)": ["-c", API + "model.detect(ferlab.demo_photos()[1])"],
    "Model.predict(one 48x48 array)": ["-c", "import numpy; " + API + "model.predict(numpy.zeros((48, 48), 'uint8'))"],
}


def timed(argv: list[str], source: str | None, cwd: str) -> float:
    environment = dict(os.environ, PYTHONPATH=source) if source else None
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=environment, cwd=cwd)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline-src", help="another checkout's src folder, timed beside this one")
    args = parser.parse_args()
    runs = {f"ferlab {' '.join(c)}": [sys.executable, "-m", "ferlab", *c] for c in COMMANDS}
    runs |= {label: [sys.executable, *arguments] for label, arguments in FIRST_ANSWERS.items()}
    sources = {"this checkout": None} | ({"baseline": args.baseline_src} if args.baseline_src else {})
    times = {(label, name): [] for label in runs for name in sources}
    with tempfile.TemporaryDirectory() as scratch:  # photo writes its results here
        for _ in range(args.repeats):  # round by round, so a slow minute slows both alike
            for label, argv in runs.items():
                for name, source in sources.items():
                    times[label, name].append(timed(argv, source, scratch))
        torch_alone = statistics.median(timed([sys.executable, "-c", "import torch"], None, scratch)
                                        for _ in range(args.repeats))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; python "
          f"{platform.python_version()}; {time.strftime('%Y-%m-%d')}; median of {args.repeats}\n")
    print("| command | " + " | ".join(f"{name} s" for name in sources) + (" | ratio |" if len(sources) > 1 else "") +
          "\n|" + " --- |" * (len(sources) + 1 + (len(sources) > 1)))
    for label in runs:
        medians = [statistics.median(times[label, name]) for name in sources]
        ratio = f" {medians[1] / medians[0]:.2f}x |" if len(medians) > 1 else ""
        print(f"| `{label}` | " + " | ".join(f"{m:.2f}" for m in medians) + " |" + ratio)
    print(f"| baseline: `python -c 'import torch'` | {torch_alone:.2f} |")


if __name__ == "__main__":
    main()
