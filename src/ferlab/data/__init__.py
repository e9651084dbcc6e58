"""Reading FER2013 in every form users have, into one FaceSet.

``load_faces(path)`` takes a ``fer2013.csv`` / ``icml_face_data.csv``, a course ``train.csv`` or
``test.csv`` (each also compressed), an image folder, its ``.zip`` / ``.tar.*`` archive, an archive
holding one of the CSVs (Kaggle's ``fer2013.tar.gz``), or a folder holding one of those.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ferlab.data.archived_csv import read_archive
from ferlab.data.cache import cache_key, load_cached, save_cached
from ferlab.data.csv_readers import read_csv
from ferlab.data.faceset import UNLABELLED, FaceSet, stratified_val_split
from ferlab.data.image_folder import is_archive, read_image_folder
from ferlab.data.limits import DEFAULT_LIMITS, ReaderLimits
from ferlab.errors import FerlabError, check_local
from ferlab.labels import EMOTIONS, SPLITS

__all__ = ["FaceSet", "UNLABELLED", "load_faces", "find_data", "is_data_source", "resolve_source", "read_csv",
           "read_image_folder", "stratified_val_split", "DEFAULT_DATA_DIRS", "ReaderLimits"]

# Where the data is looked for when neither --data nor $FERLAB_DATA says (relative to the working
# directory): a project-local copy, then the shared folder beside a checkout (as in this repo's CI).
DEFAULT_DATA_DIRS = ("data/fer2013", "../shared/data/fer2013")
# Inside a data folder, the forms we look for, most convenient first.
KNOWN_FILES = ("fer2013.csv", "icml_face_data.csv", "fer2013-images.tar.xz", "fer2013.zip",
               "fer2013.tar.gz", "train.csv")

WHERE_TO_GET = (
    "FER2013 not found. Download it (e.g. the Kaggle 'Challenges in Representation Learning: Facial "
    "Expression Recognition' fer2013.csv, or the image-folder release as a .zip) and pass it with "
    "--data PATH or set FERLAB_DATA=PATH; looked in: {looked}"
)


def is_class_folders(path: Path) -> bool:
    """A folder of labelled faces as ``<class>/<image>`` (the layout for fine-tuning data)."""
    return any((path / name).is_dir() for name in EMOTIONS)


def resolve_source(path: Path) -> Path:
    """A folder that *holds* a data file resolves to that file; an image folder stays itself."""
    if not path.is_dir():
        return path
    if (path / "train").is_dir() or (path / "test").is_dir() or is_class_folders(path):
        return path
    for name in KNOWN_FILES:
        if (path / name).is_file():
            return path / name
    archives = sorted(p for p in path.iterdir() if p.is_file() and is_archive(p) and "sample" not in p.name)
    if archives:
        return archives[0]
    raise FerlabError(f"{path}: no FER2013 data here (expected train/ and test/ folders, "
                      f"fer2013.csv, train.csv, or a .zip/.tar.* of the image folders)")


def is_csv(path: Path) -> bool:
    """A CSV by its name, compressed or not (``read_csv`` tells compression by the magic bytes)."""
    return path.name.lower().endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.xz"))


def is_data_source(path: Path) -> bool:
    """Whether ``path`` is FER2013 data (a CSV, an archive, or a folder holding the image-folder
    layout or a known data file), as opposed to loose face images."""
    if path.is_file():
        return is_csv(path) or is_archive(path)
    if path.is_dir():
        return (path / "train").is_dir() or (path / "test").is_dir() or is_class_folders(path) \
            or any((path / n).is_file() for n in KNOWN_FILES)
    return False


def find_data(explicit: str | os.PathLike | None = None) -> Path:
    """The data source: ``explicit`` (--data), then ``$FERLAB_DATA``, then DEFAULT_DATA_DIRS."""
    if explicit is not None:
        check_local(explicit, "--data")
        path = Path(explicit)
        if not path.exists():
            raise FerlabError(f"{path}: no such file or folder")
        return resolve_source(path)
    if os.environ.get("FERLAB_DATA"):
        check_local(os.environ["FERLAB_DATA"], "$FERLAB_DATA")
        path = Path(os.environ["FERLAB_DATA"])
        if not path.exists():
            raise FerlabError(f"{path}: no such file or folder (from $FERLAB_DATA)")
        return resolve_source(path)
    for candidate in DEFAULT_DATA_DIRS:
        if Path(candidate).exists():
            return resolve_source(Path(candidate).resolve())
    raise FerlabError(WHERE_TO_GET.format(looked=", ".join(DEFAULT_DATA_DIRS)))


# The readers, by the form of the source (checked on every load, also when the faces come from
# the cache): name -> (does this path have that form?, reader).
READERS = {
    "image folder": (lambda path: path.is_dir(), read_image_folder),
    "archive": (lambda path: path.is_file() and is_archive(path), read_archive),
    "csv": (lambda path: path.is_file() and is_csv(path), read_csv),
}


def reader_for(path: Path) -> tuple[str, object]:
    for form, (matches, reader) in READERS.items():
        if matches(path):
            return form, reader
    if path.exists() and not path.is_file() and not path.is_dir():  # a FIFO would block its reader
        raise FerlabError(f"{path}: not a regular file (a device, socket or FIFO)")
    raise FerlabError(f"{path}: unknown data format (expected .csv, .zip, .tar.*, or an image folder)")


def load_faces(path: str | os.PathLike, *, resize: bool = False, skip_bad_rows: bool = False,
               val_fraction: float = 0.1, seed: int = 0, use_cache: bool = True,
               limits: ReaderLimits = DEFAULT_LIMITS) -> FaceSet:
    """Read a FER2013 source into a FaceSet with train/val/test splits.

    Sources with the official split keep it (Training -> train, PublicTest -> val, PrivateTest ->
    test). A labelled source without validation faces (``train.csv``, a folder without prefixes)
    gets a stratified validation split of ``val_fraction`` of its training faces, drawn from
    ``seed``. Repeat loads come from a cache keyed by the source's form and content hash; the
    faces are reported under the path given here, whichever copy of the bytes filled the cache.
    """
    path = resolve_source(Path(path))
    if not path.exists():
        raise FerlabError(f"{path}: no such file or folder")
    form, reader = reader_for(path)
    options = {"form": form, "resize": resize, "skip_bad_rows": skip_bad_rows}
    faces = None
    if use_cache:
        key = cache_key(path, options)
        faces = load_cached(key)
    if faces is None:
        faces = reader(path, resize=resize, skip_bad_rows=skip_bad_rows, limits=limits)
        if use_cache:
            save_cached(key, faces)
    return with_validation_split(renamed(faces, str(path)), val_fraction, seed)


def renamed(faces: FaceSet, source: str) -> FaceSet:
    """The faces as read from ``source`` (the cache may have been filled from a copy elsewhere)."""
    if faces.source == source:
        return faces
    problems = tuple(source + p[len(faces.source):] if p.startswith(faces.source) else p for p in faces.problems)
    return dataclasses.replace(faces, source=source, problems=problems)


def with_validation_split(faces: FaceSet, fraction: float, seed: int) -> FaceSet:
    train, val = SPLITS.index("train"), SPLITS.index("val")
    is_train = (faces.splits == train) & (faces.labels != UNLABELLED)
    if (faces.splits == val).any() or not is_train.any():
        return faces
    chosen = stratified_val_split(faces.labels[is_train], fraction, seed)
    splits = faces.splits.clone()
    splits[is_train.nonzero().flatten()[chosen]] = val
    return dataclasses.replace(faces, splits=splits)
