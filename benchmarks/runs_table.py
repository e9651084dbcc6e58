"""Runs side by side from their metrics.json, one markdown row each and mean ± std over them: the
epoch chosen on PublicTest, PublicTest and PrivateTest plain and with the test-time augmentation
the run chose on PublicTest, and the training time. For the main job's seeds:

    ./run main --seed 0 --out runs/main-0   (and seeds 1, 2)
    python benchmarks/runs_table.py runs/main-0 runs/main-1 runs/main-2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ferlab.experiments import mean_std

COLUMNS = (("PublicTest %", "val_accuracy"), ("PrivateTest %", "test_accuracy"),
           ("PublicTest % with TTA", "val_tta_accuracy"), ("PrivateTest % with TTA", "test_tta_accuracy"))


def row_of(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    plain = {name: metrics.get(key) for name, key in COLUMNS[:2]}
    # a run whose PublicTest choice was no TTA reports its plain figures with "TTA"
    chosen = metrics.get("tta", {}).get("chosen", "none")
    tta = {name: metrics.get(key, metrics.get(key.replace("_tta", ""))) for name, key in COLUMNS[2:]}
    return {"run": run.name, "epoch": f"{metrics['best_epoch']}/{metrics['epochs']}", "tta": chosen, **plain, **tta,
            "training s": metrics["train_seconds"]}


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with metrics.json)")
    args = parser.parse_args()
    rows = [row_of(run) for run in args.runs]
    names = [name for name, _ in COLUMNS]
    print("| run | best epoch | TTA chosen on PublicTest | " + " | ".join(names) + " | training s |")
    print("| --- " * (len(names) + 4) + "|")
    for row in rows:
        print(f"| {row['run']} | {row['epoch']} | {row['tta']} | " + " | ".join(percent(row[n]) for n in names)
              + f" | {row['training s']:.0f} |")
    summary = []
    for name in names:
        values = [row[name] for row in rows if row[name] is not None]
        mean, std = mean_std(values) if values else (None, 0.0)
        summary.append("n/a" if mean is None else f"{100 * mean:.2f} ± {100 * std:.2f}")
    seconds = mean_std([row["training s"] for row in rows])
    print(f"| mean ± std of {len(rows)} | | | " + " | ".join(summary) + f" | {seconds[0]:.0f} ± {seconds[1]:.0f} |")


if __name__ == "__main__":
    main()
