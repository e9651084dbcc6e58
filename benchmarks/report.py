"""Wall time of ``ferlab report default`` now, beside a baseline commit's, in one run.

    python benchmarks/report.py [--baseline b1e3d59] [--repeats 1]

The baseline is checked out into a temporary git worktree and run from there (its own code and
shipped weights) with this environment's packages; each run is a fresh process, timed from start
to exit, so imports and data loading count as a user would see them. Runs alternate (baseline,
current, ...) so that a change in the machine's load hits both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed_report(source: Path, out: Path) -> float:
    environment = {**os.environ, "PYTHONPATH": str(source / "src")}
    command = [sys.executable, "-c", "import sys; from ferlab.cli import main; sys.exit(main(sys.argv[1:]))",
               "report", "default", "--out", str(out)]
    started = time.perf_counter()
    subprocess.run(command, env=environment, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", default="b1e3d59", help="the commit to compare with (default: main before issue 13)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        baseline = Path(folder) / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(baseline), args.baseline],
                       check=True, capture_output=True)
        try:
            times: dict[str, list[float]] = {"baseline": [], "current": []}
            stages: dict[str, dict] = {}  # each code's stage seconds (report-timings.json) of its last run
            for repeat in range(args.repeats):
                for name, source in (("baseline", baseline), ("current", REPO)):
                    out = Path(folder) / f"{name}-{repeat}"
                    times[name].append(timed_report(source, out))
                    stages[name] = json.loads((out / "report-timings.json").read_text())
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)], check=False)
    print(f"# ferlab report default, {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    for name, values in times.items():
        print(f"{name:<9} {' '.join(f'{v:.1f}' for v in values)} s")
    print(f"ratio current/baseline: {min(times['current']) / min(times['baseline']):.2f}")
    for name, seconds in stages.items():
        print(f"{name} stages (s): {', '.join(f'{stage} {value}' for stage, value in seconds.items())}")


if __name__ == "__main__":
    main()
