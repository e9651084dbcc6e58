"""Readers for the two CSV forms of FER2013.

- the challenge's ``fer2013.csv``: ``emotion,pixels,Usage`` (also ``icml_face_data.csv``, whose
  header is ``emotion, Usage, pixels`` with leading spaces);
- the course assignment's ``train.csv`` (``label,feature``) and ``test.csv`` (``id,feature``).

Any of them may be gzip-, bzip2- or xz-compressed, whatever the file is called (recognised by its
magic bytes). Text is UTF-8 (with or without a byte-order mark), or UTF-16 with its byte-order
mark; lines end in LF, CRLF or a bare CR (as classic Mac programs saved them). A line that is not
valid text, or longer than ``ReaderLimits.line_bytes``, is a bad row naming its line, like any other.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import itertools
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ferlab.data.bad_rows import BadRows
from ferlab.data.faceset import UNLABELLED, FaceSet
from ferlab.data.limits import DEFAULT_LIMITS, ReaderLimits, describe_size, open_source
from ferlab.errors import DataError, brief
from ferlab.labels import EMOTIONS, IMAGE_SIZE, OFFICIAL_SPLIT_NAMES, SPLITS

PIXELS = IMAGE_SIZE * IMAGE_SIZE
FORMS = {  # form name -> the columns it needs (lower case, stripped)
    "challenge": ("emotion", "pixels"),
    "course-train": ("label", "feature"),
    "course-test": ("id", "feature"),
}
INTEGER = re.compile(r"[+-]?[0-9]+")  # ASCII digits only: str.isdigit() also accepts "²", which int() refuses
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def parse_pixels(text: str) -> np.ndarray | str:
    """2,304 space-separated values 0..255 -> (48, 48) uint8, or a string saying what is wrong.

    Values are parsed as int64 and range-checked before the cast: a cast straight to uint8 (as
    ``torch.tensor(..., dtype=torch.uint8)`` does) would silently turn -1 into 255.
    """
    with warnings.catch_warnings():
        # NumPy warns (and stops) at the first token it cannot parse; make that an error.
        warnings.simplefilter("error", DeprecationWarning)
        try:
            values = np.fromstring(text, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            bad = next((t for t in text.split() if not INTEGER.fullmatch(t)), text)
            return f"non-numeric pixel value {bad[:20]!r}"
    if values.size != PIXELS:
        return f"expected {PIXELS} pixel values (48x48), found {values.size}"
    out_of_range = np.flatnonzero((values < 0) | (values > 255))
    if out_of_range.size:
        i = int(out_of_range[0])
        return f"pixel value {int(values[i])} at position {i + 1} is outside 0..255"
    return values.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)


def parse_label(text: str) -> int | str:
    """A class as its number 0..6 or its name -> index, or a string saying what is wrong."""
    text = text.strip()
    if INTEGER.fullmatch(text):  # int() refuses over 4,300 digits with a ValueError; no label needs 20
        value = int(text) if len(text) <= 20 else None
        return value if value is not None and 0 <= value < len(EMOTIONS) else f"unknown label {brief(text)} (expected 0..6)"
    if text.lower() in EMOTIONS:
        return EMOTIONS.index(text.lower())
    return f"unknown label {brief(text)} (expected 0..6 or a class name)"


KNOWN_COLUMNS = {"emotion", "pixels", "usage", "label", "feature", "id"}


def detect_form(header: list[str], source: str) -> tuple[str, dict[str, int]]:
    columns = {name.strip().lower(): i for i, name in enumerate(header)}
    unknown = [name.strip() for name in header if name.strip().lower() not in KNOWN_COLUMNS]
    if unknown:  # a misspelt Usage would silently turn the official split into a drawn one
        raise DataError(source, 1, f"unknown column {unknown[0][:40]!r}; the columns of the FER2013 CSVs are "
                                   "emotion,pixels,Usage (fer2013.csv), label,feature (train.csv) and id,feature (test.csv)")
    if len(columns) < len(header):  # two pixel columns: which is the face? (the last one was read)
        twice = next(name.strip() for i, name in enumerate(header)
                     if name.strip().lower() in (earlier.strip().lower() for earlier in header[:i]))
        raise DataError(source, 1, f"column {twice!r} given twice; which one holds the data is not clear")
    for form, needed in FORMS.items():
        if all(name in columns for name in needed):
            return form, columns
    raise DataError(
        source, 1,
        f"missing column: found {','.join(h.strip() for h in header)!r}; expected emotion,pixels,Usage "
        "(fer2013.csv), label,feature (train.csv) or id,feature (test.csv)",
    )


class BareCarriageReturns(io.RawIOBase):
    """A byte stream whose lines end in a bare CR, read as if they ended in LF: ``head`` (its first
    bytes, already read) and then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: io.BufferedReader):
        super().__init__()
        self.head, self.stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.head[:len(buffer)] if self.head else self.stream.read(len(buffer))
        self.head = self.head[len(data):]
        buffer[:len(data)] = data.replace(b"\r", b"\n")
        return len(data)


def text_lines(stream: io.BufferedReader, source: str, limits: ReaderLimits) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, text, problem) per line of a UTF-8 or BOM-marked UTF-16 byte stream. A line
    is read at most ``limits.line_bytes`` at a time, so a file without newlines cannot fill memory;
    an over-long or undecodable line comes with a problem instead of its text."""
    if stream.peek(2)[:2] in UTF16_BOMS:  # the byte-order mark makes the encoding certain
        text = io.TextIOWrapper(stream, encoding="utf-16", newline="")
        try:
            for number, line in enumerate(iter(lambda: text.readline(limits.line_bytes), ""), 1):
                yield number, line, None
        except UnicodeDecodeError as error:
            raise DataError(source, None, f"damaged UTF-16 text ({error.reason})") from None
        return
    if stream.peek(3)[:3] == codecs.BOM_UTF8:
        stream.read(3)
    first = stream.readline(limits.line_bytes + 1)
    if b"\r" in first and not first.endswith(b"\n"):  # the header ends in a bare CR, as classic Mac programs saved
        stream = io.BufferedReader(BareCarriageReturns(first, stream))  # (it was "line 1 is longer than the limit")
        first = stream.readline(limits.line_bytes + 1)
    lines = itertools.chain([first] if first else [], iter(lambda: stream.readline(limits.line_bytes + 1), b""))
    for number, raw in enumerate(lines, 1):
        if len(raw) > limits.line_bytes and not raw.endswith(b"\n"):
            while (rest := stream.readline(limits.line_bytes + 1)) and not rest.endswith(b"\n"):
                pass  # skip the rest of the over-long line
            yield number, None, f"line is longer than the readers' limit of {describe_size(limits.line_bytes)}"
            continue
        try:
            yield number, raw.decode("utf-8"), None
        except UnicodeDecodeError as error:
            yield number, None, (f"not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1}); "
                                 "save the file as UTF-8")


def parse_row(line: str) -> list[str] | str:
    """One CSV line -> its fields, or a string saying what is wrong (a NUL byte, an open quote)."""
    try:
        return next(csv.reader((line,)), [])
    except csv.Error as error:
        return f"malformed CSV ({error})"


def read_csv(path: str | Path, *, skip_bad_rows: bool = False, limits: ReaderLimits = DEFAULT_LIMITS,
             resize: bool = False) -> FaceSet:
    """Read any of the three CSV forms. Faces of ``train.csv`` are all "train" (the caller carves
    a validation split); faces of ``test.csv`` are unlabelled "test" faces. (``resize`` is accepted
    for the readers' one signature; CSV faces are 48x48 by construction.)"""
    stream, _ = open_source(Path(path), limits)
    with stream:
        return read_csv_stream(stream, str(path), skip_bad_rows=skip_bad_rows, limits=limits)


@dataclasses.dataclass(frozen=True)
class RowLayout:
    """Where a CSV form keeps each field: column positions (None where the form has no such column)."""

    width: int
    pixels: int
    label: int | None
    usage: int | None
    id: int | None
    default_split: str  # without a Usage column: the course's test.csv is "test", any other form "train"

    @classmethod
    def of(cls, form: str, header: list[str], columns: dict[str, int]) -> RowLayout:
        return cls(len(header), columns["pixels" if form == "challenge" else "feature"],
                   columns.get("emotion" if form == "challenge" else "label"), columns.get("usage"), columns.get("id"),
                   "test" if form == "course-test" else "train")


def parse_face(row: list[str], layout: RowLayout, line: int) -> tuple[np.ndarray, int, int, str] | str:
    """One face of a parsed CSV row: (pixels, label, split index, id), or what is wrong with it."""
    if len(row) != layout.width:
        return f"expected {layout.width} fields, found {len(row)}"
    pixels = parse_pixels(row[layout.pixels])
    if isinstance(pixels, str):
        return pixels
    label = UNLABELLED if layout.label is None else parse_label(row[layout.label])
    if isinstance(label, str):
        return label
    split = layout.default_split
    if layout.usage is not None:
        usage = row[layout.usage].strip()
        if usage not in OFFICIAL_SPLIT_NAMES:
            return f"unknown Usage {brief(usage)} (expected Training, PublicTest or PrivateTest)"
        split = OFFICIAL_SPLIT_NAMES[usage]
    return pixels, label, SPLITS.index(split), row[layout.id].strip() if layout.id is not None else f"line {line}"


def read_csv_stream(stream: io.BufferedReader, source: str, *, skip_bad_rows: bool = False,
                    limits: ReaderLimits = DEFAULT_LIMITS) -> FaceSet:
    """``read_csv`` of a byte stream (a file, or a member of an archive); ``source`` names it in
    every message."""
    lines = text_lines(stream, source, limits)
    number, header_line, problem = next(lines, (None, None, "empty file"))
    header = parse_row(header_line) if problem is None else problem
    if isinstance(header, str):
        raise DataError(source, number, header if number is None else f"header: {header}")
    form, columns = detect_form(header, source)
    layout = RowLayout.of(form, header, columns)
    bad = BadRows(source, skip_bad_rows)
    faces = []
    for line, text, problem in lines:
        row = parse_row(text) if problem is None else problem
        if not isinstance(row, str) and (not row or (len(row) == 1 and not row[0].strip())):
            continue  # blank line
        face = row if isinstance(row, str) else parse_face(row, layout, line)
        if isinstance(face, str):
            bad.report(line, face)
        else:
            faces.append(face)
    if not faces:
        raise DataError(source, None, "no faces found" + (f" ({bad.count} bad rows skipped)" if bad.count else " (a header and no rows)"))
    images, labels, splits, ids = zip(*faces)
    return FaceSet(
        torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64),
        torch.tensor(splits, dtype=torch.int64), tuple(ids), source, bad.count, tuple(bad.problems),
        official_splits=layout.usage is not None,
    )
