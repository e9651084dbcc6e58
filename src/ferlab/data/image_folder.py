"""Reader for the image-folder release of FER2013 (``train/<class>/Training_<id>.jpg``,
``test/<class>/PublicTest_<id>.jpg``, ``test/<class>/PrivateTest_<id>.jpg``), as a folder or
straight from its ``.zip`` / ``.tar.*`` archive.

The class comes from the parent folder's *name* (never its position in a listing); the split from
the file-name prefix, or, without one, from the ``train``/``test`` folder.
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ferlab.data.bad_rows import BadRows
from ferlab.data.faceset import FaceSet
from ferlab.errors import DataError
from ferlab.labels import EMOTIONS, IMAGE_SIZE, OFFICIAL_SPLIT_NAMES, SPLITS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".pgm", ".tif", ".tiff", ".webp")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".zip") or name.endswith(TAR_SUFFIXES)


def iter_folder(root: Path) -> Iterator[tuple[str, bytes]]:
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            full = Path(folder, name)
            yield full.relative_to(root).as_posix(), full.read_bytes()


def iter_zip(path: Path) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.is_dir():
                yield info.filename, archive.read(info)


def iter_tar(path: Path) -> Iterator[tuple[str, bytes]]:
    # Stream mode ("r|*") reads the compressed archive once, front to back: the fast way for .xz.
    with tarfile.open(path, "r|*") as archive:
        for member in archive:
            if member.isfile():
                yield member.name, archive.extractfile(member).read()


def iter_entries(path: Path, source: str) -> Iterator[tuple[str, bytes]]:
    try:
        if path.is_dir():
            yield from iter_folder(path)
        elif path.name.lower().endswith(".zip"):
            yield from iter_zip(path)
        else:
            yield from iter_tar(path)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise DataError(source, None, f"unreadable archive: {error}") from error


def decode_face(data: bytes, resize: bool) -> np.ndarray | str:
    """Image bytes -> (48, 48) uint8 grayscale, or a string saying what is wrong."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            gray = image.convert("L")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        return f"unreadable image ({error.__class__.__name__}: {str(error)[:80]})"
    if gray.size != (IMAGE_SIZE, IMAGE_SIZE):
        if not resize:
            return f"image is {gray.size[0]}x{gray.size[1]}, expected 48x48 (pass --resize to resize it)"
        gray = gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.uint8)


def place(relative: str) -> tuple[str, str | None, str] | str:
    """(id, class folder, split) of an entry's path, or a problem string."""
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if len(parts) < 2:
        return "image is not inside a class folder (expected <train|test>/<class>/<file>)"
    name, class_folder = parts[-1], parts[-2]
    top = parts[-3].lower() if len(parts) >= 3 else ""
    prefix = name.split("_", 1)[0]
    if prefix in OFFICIAL_SPLIT_NAMES:
        split = OFFICIAL_SPLIT_NAMES[prefix]
    else:
        split = "test" if top == "test" else "train"
    return "/".join(parts[-3:]), class_folder, split


def read_image_folder(path: str | Path, *, resize: bool = False, skip_bad_rows: bool = False) -> FaceSet:
    """Read a folder, ``.zip`` or ``.tar.*`` of ``<split>/<class>/<image>`` files. Files that are not
    images by their suffix (READMEs, ``.DS_Store``) are passed over; every image is either read or
    reported."""
    path = Path(path)
    source = str(path)
    bad = BadRows(source, skip_bad_rows)
    records: list[tuple[str, np.ndarray, int, int]] = []
    for relative, data in iter_entries(path, source):
        parts = relative.split("/")
        if any(p.startswith(".") or p == "__MACOSX" for p in parts) or not relative.lower().endswith(IMAGE_SUFFIXES):
            continue
        placed = place(relative)
        if isinstance(placed, str):
            bad.report(relative, placed)
            continue
        face_id, class_folder, split = placed
        if class_folder.lower() not in EMOTIONS:
            bad.report(relative, f"unknown class folder {class_folder!r} (expected one of {', '.join(EMOTIONS)})")
            continue
        if not data:
            bad.report(relative, "empty file")
            continue
        face = decode_face(data, resize)
        if isinstance(face, str):
            bad.report(relative, face)
            continue
        records.append((face_id, face, EMOTIONS.index(class_folder.lower()), SPLITS.index(split)))
    if not records:
        raise DataError(source, None, "no face images found (expected <train|test>/<class>/<image> entries)"
                        + (f"; {bad.count} bad entries skipped" if bad.count else ""))
    records.sort(key=lambda r: r[0])  # the same order from a folder and from its archive
    ids, faces, labels, splits = zip(*records)
    return FaceSet(
        torch.from_numpy(np.stack(faces)), torch.tensor(labels, dtype=torch.int64),
        torch.tensor(splits, dtype=torch.int64), tuple(ids), source, bad.count, tuple(bad.problems),
    )
