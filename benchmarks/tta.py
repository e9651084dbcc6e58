"""Choose a test-time augmentation policy on PublicTest: each candidate averages the logits of some
views of every face (mirror, zoom about the centre, shift by whole pixels, corner and centre
windows). Candidates are ranked on PublicTest; PrivateTest is then evaluated once, for plain flip
TTA and for the PublicTest choice.

    python benchmarks/tta.py [--model default] [--data PATH] [--limit N] [--only NAME ...]

Every view's logits are computed once per split and shared by the candidates that use it
(``LoadedModel.logits_of_views``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ferlab.checkpoint import load_model
from ferlab.data import load_faces
from ferlab.tta import CORNERS_AND_CENTRE

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "fer2013-images.tar.xz"
MIRRORS = (False, True)
SHIFT_CROSS = ((0, 0), (2, 0), (-2, 0), (0, 2), (0, -2))
SHIFT_GRID = tuple((dx, dy) for dx in (-2, 0, 2) for dy in (-2, 0, 2))
# name -> views (mirrored, zoom, (right, down) pixels)
CANDIDATES = {
    "none": [(False, 1.0, (0, 0))],
    "flip": [(m, 1.0, (0, 0)) for m in MIRRORS],
    "flip + 2-px shifts, cross (10 views)": [(m, 1.0, s) for m in MIRRORS for s in SHIFT_CROSS],
    "flip + 2-px shifts, 3x3 grid (18 views)": [(m, 1.0, s) for m in MIRRORS for s in SHIFT_GRID],
    "flip + zoom 0.9 / 1.1 (6 views) = flip-zoom": [(m, z, (0, 0)) for m in MIRRORS for z in (1.0, 0.9, 1.1)],
    "flip + shifts cross + zoom (14 views)": [(m, 1.0, s) for m in MIRRORS for s in SHIFT_CROSS]
                                             + [(m, z, (0, 0)) for m in MIRRORS for z in (0.9, 1.1)],
    "ten-crop (corners + centre, each mirrored)": [(m, 1.0, (0, 0), w) for w in CORNERS_AND_CENTRE for m in MIRRORS],
}


def accuracies(loaded, split, candidates: dict) -> dict[str, float]:
    logits = loaded.logits_of_views(split.images, candidates)  # each distinct view inferred once
    return {name: float((logits[name].argmax(1) == split.labels).double().mean()) for name in candidates}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default", help="run folder, checkpoint, or 'default'")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, help="use only the first N faces of each split (a quick check)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="candidates whose names start with these")
    args = parser.parse_args()
    candidates = {name: views for name, views in CANDIDATES.items()
                  if not args.only or name in ("none", "flip") or name.startswith(tuple(args.only))}
    loaded = load_model(args.model)
    faces = load_faces(args.data)
    val, test = faces.split("val"), faces.split("test")
    if args.limit:
        val, test = val.select(torch.arange(min(args.limit, len(val)))), test.select(torch.arange(min(args.limit, len(test))))
    started = time.perf_counter()
    public = accuracies(loaded, val, candidates)
    chosen = max(public, key=public.get)
    private = accuracies(loaded, test, {name: candidates[name] for name in dict.fromkeys(["flip", chosen])})
    print(f"model {args.model}; {len(val)} PublicTest / {len(test)} PrivateTest faces; torch {torch.__version__}; "
          f"{time.strftime('%Y-%m-%d')}; {time.perf_counter() - started:.0f} s\n")
    print("| test-time augmentation | PublicTest % | PrivateTest % |\n| --- | --- | --- |")
    for name, accuracy in public.items():
        shown = f"{100 * private[name]:.2f}" if name in private else "not evaluated"
        print(f"| {name}{' (chosen)' if name == chosen else ''} | {100 * accuracy:.2f} | {shown} |")


if __name__ == "__main__":
    main()
