"""FER2013's CSV inside an archive, read without extracting it: Kaggle's challenge download
``fer2013.tar.gz`` (``fer2013/fer2013.csv`` beside a README) and the competition's zip
(``icml_face_data.csv``, ``train.csv``, ``test.csv`` and ``example_submission.csv``). An archive of
face images is read as one (``ferlab.data.image_folder``); only one without a face image is
looked into for a CSV, so the image archives cost no second pass."""

from __future__ import annotations

import dataclasses
import posixpath
from pathlib import Path

from ferlab.data.archives import open_member
from ferlab.data.csv_readers import read_csv_stream
from ferlab.data.faceset import FaceSet
from ferlab.data.image_folder import NoFaceImages, is_hidden, read_image_folder
from ferlab.data.limits import DEFAULT_LIMITS, ReaderLimits
from ferlab.errors import DataError

# Kaggle's names, most complete first: the first two carry the official three-way split.
PREFERRED_CSVS = ("fer2013.csv", "icml_face_data.csv", "train.csv")


def csv_members(names: tuple[str, ...]) -> list[str]:
    return [n for n in names if n.lower().endswith(".csv") and not is_hidden(n)]


def choose_csv(names: tuple[str, ...]) -> str | None:
    """The member to read among an archive's files: a preferred name found once, else the only CSV."""
    candidates = csv_members(names)
    for preferred in PREFERRED_CSVS:
        matches = [n for n in candidates if posixpath.basename(n).lower() == preferred]
        if len(matches) == 1:
            return matches[0]
    return candidates[0] if len(candidates) == 1 else None


def read_archive(path: str | Path, *, resize: bool = False, skip_bad_rows: bool = False,
                 limits: ReaderLimits = DEFAULT_LIMITS) -> FaceSet:
    """The faces of a ``.zip`` / ``.tar.*``: its images, or, holding none, its FER2013 CSV. Messages
    name the member (``fer2013.tar.gz:fer2013/fer2013.csv:12: ...``)."""
    path = Path(path)
    try:
        return read_image_folder(path, resize=resize, skip_bad_rows=skip_bad_rows, limits=limits)
    except NoFaceImages as error:
        member, candidates = choose_csv(error.passed_over), csv_members(error.passed_over)
        if member is None and len(candidates) > 1:
            raise DataError(str(path), None, f"no face images, and several CSVs ({', '.join(candidates[:4])}): "
                                             "extract the one to read and pass it with --data") from None
        if member is None:
            raise
    with open_member(path, member, limits) as stream:
        faces = read_csv_stream(stream, f"{path}:{member}", skip_bad_rows=skip_bad_rows, limits=limits)
    return dataclasses.replace(faces, source=str(path))
