"""Which teachers to distil from, chosen on PublicTest alone: the accuracy of every equal-weight
combination of candidate models (their calibrated probabilities averaged, as ``ferlab ensemble``
combines them) under each test-time augmentation a teacher can take (``ferlab distill
--teacher-flip`` is ``flip``). PrivateTest is never read.

    python benchmarks/teachers.py MODEL... [--must MODEL] [--tta none flip] [--most 5] [--top 20]

MODEL: run folders, checkpoints, 'default' or 'default-fast'. ``--must``: only combinations that
hold it (the current teacher, say). A student that already matches its teacher on PublicTest
learns little more from it; a combination that beats the teacher there is the next one to try.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch

from ferlab.checkpoint import load_model
from ferlab.data import load_faces
from ferlab.data.faceset import FaceSet
from ferlab.errors import FerlabError
from ferlab.runs import labelled_split

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "fer2013-images.tar.xz"


def public_probabilities(models: dict[str, str], faces: FaceSet, ttas: list[str]) -> tuple[dict, torch.Tensor]:
    """({(name, tta): (N, 7) PublicTest probabilities}, PublicTest labels); nothing else is inferred."""
    public = labelled_split(faces, "val")
    probabilities = {}
    for name, source in models.items():
        loaded = load_model(source, device="cpu")
        for tta in ttas:
            probabilities[(name, tta)] = loaded.probabilities(public.images, tta=tta)
    return probabilities, public.labels


def ranked(probabilities: dict, labels: torch.Tensor, names: list[str], ttas: list[str], must: str | None = None,
           most: int = 5) -> list[tuple[float, str, tuple[str, ...]]]:
    """(PublicTest accuracy, tta, members) of every combination of 1..most of ``names`` (those
    holding ``must``, if given), best first; ties keep fewer members first."""
    rows = []
    for size in range(1, min(most, len(names)) + 1):
        for members in itertools.combinations(names, size):
            if must is not None and must not in members:
                continue
            for tta in ttas:
                mean = torch.stack([probabilities[(name, tta)] for name in members]).mean(0)
                rows.append((float((mean.argmax(1) == labels).double().mean()), tta, members))
    return sorted(rows, key=lambda row: (-row[0], len(row[2])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="candidate teachers")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--must", help="only combinations holding this model")
    parser.add_argument("--tta", nargs="+", default=["none", "flip"], help="test-time augmentations to try")
    parser.add_argument("--most", type=int, default=5, help="the most members a combination has")
    parser.add_argument("--top", type=int, default=20, help="rows printed")
    args = parser.parse_args()
    if args.must is not None and args.must not in args.models:
        parser.error(f"--must {args.must}: not among the models")
    models = {name: name for name in dict.fromkeys(args.models)}
    try:
        probabilities, labels = public_probabilities(models, load_faces(args.data), args.tta)
    except FerlabError as error:  # a missing or damaged model or data set: one line, as the CLI says it
        print(f"teachers: {error}", file=sys.stderr)
        sys.exit(2)
    rows = ranked(probabilities, labels, list(models), args.tta, args.must, args.most)
    print(f"{len(rows)} combinations on PublicTest ({len(labels)} faces); PrivateTest not read\n")
    print("| teachers (equal weights) | TTA | PublicTest % |\n| --- | --- | --- |")
    for accuracy, tta, members in rows[: args.top]:
        print(f"| {' + '.join(members)} | {tta} | {100 * accuracy:.2f} |")


if __name__ == "__main__":
    main()
