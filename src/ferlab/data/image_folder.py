"""Reader for the image-folder release of FER2013 (``train/<class>/Training_<id>.jpg``,
``test/<class>/PublicTest_<id>.jpg``, ``test/<class>/PrivateTest_<id>.jpg``), as a folder or
straight from its ``.zip`` / ``.tar.*`` archive.

The class comes from the parent folder's *name* (never its position in a listing); the split from
the file-name prefix, or, without one, from the ``train``/``test`` folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ferlab.data.archives import Entry, iter_entries
from ferlab.data.bad_rows import BadRows
from ferlab.data.faceset import FaceSet
from ferlab.data.images import decode_face
from ferlab.data.limits import DEFAULT_LIMITS, ReaderLimits
from ferlab.errors import DataError
from ferlab.labels import EMOTIONS, OFFICIAL_SPLIT_NAMES, SPLITS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".pgm", ".tif", ".tiff", ".webp", ".avif")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")


class NoFaceImages(DataError):
    """A folder or archive without one face image; ``passed_over`` names its other files (an
    archive may hold FER2013 as a CSV instead: ``ferlab.data.archived_csv``)."""

    def __init__(self, source: str, where, problem: str, passed_over: tuple[str, ...] = ()):
        super().__init__(source, where, problem)
        self.passed_over = passed_over


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".zip") or name.endswith(TAR_SUFFIXES)


def is_hidden(name: str) -> bool:
    """A hidden file or one inside a hidden folder, or a macOS resource fork (``__MACOSX/``)."""
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


def is_passed_over(entry: Entry) -> bool:
    """Entries that are not faces by their name: hidden files, macOS resource forks, READMEs."""
    return not entry.is_folder and (is_hidden(entry.name) or not entry.name.lower().endswith(IMAGE_SUFFIXES))


def official_split(file_name: str) -> str | None:
    """The split a FER2013 file name carries (``PrivateTest_123.jpg``: "test"), or None."""
    return OFFICIAL_SPLIT_NAMES.get(file_name.split("_", 1)[0])


def place(relative: str) -> tuple[str, str | None, str] | str:
    """(id, class folder, split) of an entry's path, or a problem string."""
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if len(parts) < 2:
        return "image is not inside a class folder (expected <train|test>/<class>/<file>)"
    name, class_folder = parts[-1], parts[-2]
    top = parts[-3].lower() if len(parts) >= 3 else ""
    split = official_split(name) or ("test" if top == "test" else "train")
    return "/".join(parts[-3:]), class_folder, split


def read_image_folder(path: str | Path, *, resize: bool = False, skip_bad_rows: bool = False,
                      limits: ReaderLimits = DEFAULT_LIMITS) -> FaceSet:
    """Read a folder, ``.zip`` or ``.tar.*`` of ``<split>/<class>/<image>`` files. Files that are not
    images by their suffix (READMEs, ``.DS_Store``) are passed over; every image is either read or
    reported, and a damaged archive is an error (see ``ferlab.data.archives``)."""
    path = Path(path)
    source = str(path)
    bad = BadRows(source, skip_bad_rows)
    records: list[tuple[str, np.ndarray, int, int]] = []
    passed_over: list[str] = []
    noted: list[tuple[str, str]] = []  # (entry, what its pixels could not show as meant)
    first_entry: dict[str, str] = {}  # face id -> the entry that gave it
    for entry in iter_entries(path, limits):
        if is_passed_over(entry):
            passed_over.append(entry.name)
            continue
        record = read_entry(entry, resize, limits)
        if isinstance(record, str):
            bad.report(entry.name, record)
        elif record[0] in first_entry:  # read twice, it would count twice, or stand in two splits' places
            bad.report(entry.name, repeated_face(entry.name, record[0], first_entry[record[0]]))
        else:
            first_entry[record[0]] = entry.name
            records.append(record[:4])
            if record[4]:
                noted.append((entry.name, record[4]))
    if not records:
        raise NoFaceImages(source, None, "no face images found (expected <train|test>/<class>/<image> entries)"
                           + (f"; {bad.count} bad entries skipped" if bad.count else ""), passed_over=tuple(passed_over))
    records.sort(key=lambda r: r[0])  # the same order from a folder and from its archive
    ids, faces, labels, splits = zip(*records)
    # The official splits hold when every face's file name carries its FER2013 split.
    official = all(official_split(face_id.rsplit("/", 1)[-1]) for face_id in ids)
    return FaceSet(
        torch.from_numpy(np.stack(faces)), torch.tensor(labels, dtype=torch.int64),
        torch.tensor(splits, dtype=torch.int64), tuple(ids), source, bad.count, tuple(bad.problems), official,
        passed_over_note(passed_over) + pixel_notes_summary(noted),
    )


def repeated_face(name: str, face_id: str, first: str) -> str:
    """What is wrong with an entry whose face id an earlier entry gave: a second member of one name
    (an archive appended to: which copy is meant?), or a second tree (``a/train/...``, ``b/train/...``)."""
    if name == first:
        return "a second member of this name (an archive appended to?); each face is read once"
    return f"face {face_id} again, first read from {first}; each face is read once"


def passed_over_note(names: list[str], shown: int = 3) -> tuple[str, ...]:
    """The entries passed over as not images by their names, counted, the first few named (the
    visible ones before ``.DS_Store`` and ``__MACOSX/``): an unsuffixed ``PrivateTest_9`` shows."""
    if not names:
        return ()
    first = sorted(names, key=lambda name: (is_hidden(name), name))[:shown]
    more = ", …" if len(names) > shown else ""
    entries = "entry that is not an image" if len(names) == 1 else "entries that are not images"
    return (f"passed over {len(names)} {entries} by name ({', '.join(first)}{more})",)


def pixel_notes_summary(noted: list[tuple[str, str]]) -> tuple[str, ...]:
    """The images whose pixels could not be read as meant (``ferlab.data.images.pixels_note``:
    16-bit values under 4096 read nearly black, values clipped to white), counted, the first named
    with its note: a set of them was trained on as black or white faces without a word."""
    if not noted:
        return ()
    name, note = sorted(noted)[0]
    return (f"{len(noted)} image(s) whose pixels could not be read as meant, the first {name}: {note}",)


def read_entry(entry: Entry, resize: bool, limits: ReaderLimits) -> tuple[str, np.ndarray, int, int, str | None] | str:
    """One face of a folder or archive entry: (id, 48x48 pixels, label, split index, a note on
    pixels that could not be read as meant), or what is wrong with it."""
    if entry.problem is not None:
        return entry.problem
    placed = place(entry.name)
    if isinstance(placed, str):
        return placed
    face_id, class_folder, split = placed
    if class_folder.lower() not in EMOTIONS:
        return f"unknown class folder {class_folder!r} (expected one of {', '.join(EMOTIONS)})"
    face = decode_face(entry.data, resize, limits.image_pixels)
    if isinstance(face, str):
        return face
    pixels, note = face
    return face_id, pixels, EMOTIONS.index(class_folder.lower()), SPLITS.index(split), note
