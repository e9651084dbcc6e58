"""Output files, each written whole or not at all.

Every file ferlab writes goes through ``written``: a temporary file beside the output (the same
folder, so the rename stays on one file system; the output's suffix kept, for writers that choose
their format by it) is renamed over the output once it is complete. A failure on the way, a full
disk or a quota, removes the temporary file and is one FerlabError naming the output: neither a
half-written file in the output's place nor litter beside it, and the last good output stays.
Names made from an input's (``within_name_limit``) stay within the 255 bytes a file name holds.
"""

from __future__ import annotations

import contextlib
import filecmp
import hashlib
import io
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from ferlab.errors import FerlabError


MAX_NAME_BYTES = 200  # an output's name before its ending (-annotated.png, -face12.png): file names hold 255 bytes


def within_name_limit(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """``name`` where it fits ``limit`` bytes of UTF-8, else its start and a hash of the whole
    (``aaaa...~1f2e3d4c``): still readable, still unique, and writable."""
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) <= limit:
        return name
    start = encoded[:limit - 9].decode("utf-8", "ignore")  # a character cut in two is left out
    return f"{start}~{hashlib.sha1(encoded).hexdigest()[:8]}"


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: by any path to it, a hard link or a symlink too."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def same_content(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes (sizes first, so distinct files are rarely read)."""
    try:
        return filecmp.cmp(a, b, shallow=False)
    except OSError:  # unreadable: whoever reads it next says so, naming it
        return False


@contextlib.contextmanager
def written(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write ``path``'s content to; renamed over ``path`` when the block ends."""
    path = Path(path)
    ending = f".{os.getpid()}-{threading.get_ident()}.tmp{path.suffix}"  # its own name stays within 255 bytes
    temporary = path.with_name(f".{within_name_limit(path.stem, 254 - len(ending.encode()))}{ending}")
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as error:
        raise FerlabError(f"{path}: cannot write it ({error.strerror or error})") from None
    finally:
        temporary.unlink(missing_ok=True)  # gone already where the rename happened


def write_text(path: str | os.PathLike, text: str) -> None:
    with written(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> None:
    with written(path) as temporary:
        temporary.write_bytes(data)


def save_torch(payload, path: str | os.PathLike) -> None:
    """``torch.save`` of ``payload``, serialised in memory first: written straight to a file, a full
    disk is a RuntimeError from its zip writer ("unexpected pos 64 vs 0"), not the OSError it is."""
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes(path, buffer.getbuffer())


FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".pdf")


def check_figure_name(path: Path) -> None:
    """Before the work, a figure file a user named: of a format it can be written in (``-o notes.txt``
    failed after all of LIME's work; ``-o out``, meant as a folder, became a PNG named ``out``)."""
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise FerlabError(f"{path}: a figure is written here; name it .png, .jpg, .svg or .pdf")


def save_figure(figure, path: str | os.PathLike, **options) -> None:
    """A matplotlib figure as an image file, its format from ``path``'s suffix (PNG where it has
    none): named explicitly, as the temporary file's own suffix may be ``.tmp``."""
    path = Path(path)
    image_format = path.suffix[1:].lower() or "png"
    if image_format not in figure.canvas.get_supported_filetypes():
        raise FerlabError(f"{path}: cannot write a figure as .{image_format}; name it .png, .jpg, .svg or .pdf")
    with written(path) as temporary:
        figure.savefig(temporary, format=image_format, **options)


FIGURE_SOURCE_KEY = "Source"  # a PNG text chunk: what a regenerable figure shows, so a rerun knows its own figure


def png_text(path: Path, key: str) -> str | None:
    """The ``key`` text of the PNG at ``path``, or None where there is no such file, it is not a
    PNG or it has no such text (read up to its first pixels only)."""
    from PIL import Image

    try:
        if not path.is_file():  # opening a FIFO would wait for a writer
            return None
        with Image.open(path) as image:
            return image.info.get(key) if image.format == "PNG" else None
    except Exception:  # noqa: BLE001 - not an image, unreadable: no text of ours
        return None


def figure_source(path: Path) -> str | None:
    """What the PNG figure at ``path`` was drawn of (its ``Source`` text), or None."""
    return png_text(path, FIGURE_SOURCE_KEY)


def figure_path(folder: Path, stem: str, source: str) -> Path:
    """Where a regenerable PNG figure of ``source`` goes in ``folder``: ``stem.png``, or where that
    holds a figure of something else (or a file ferlab did not draw) ``stem-2.png``, ``stem-3.png``...:
    the figure of the same source is replaced, every other one kept."""
    path, number = folder / f"{stem}.png", 1
    while path.exists() and figure_source(path) != source:
        number += 1
        path = folder / f"{stem}-{number}.png"
    return path


def read_small_text(path: Path, limit: int = 2**24) -> str | None:
    """A UTF-8 file's text, or None where it is missing, larger than ``limit`` bytes or not UTF-8."""
    try:
        if not path.is_file() or path.stat().st_size > limit:
            return None
        return path.read_bytes().decode("utf-8")
    except (OSError, ValueError):
        return None


def read_small_json(path: Path, limit: int = 2**24):
    """A JSON file's value, or None where it is missing, larger than ``limit`` bytes or not JSON."""
    text = read_small_text(path, limit)
    try:
        return None if text is None else json.loads(text)
    except ValueError:
        return None
