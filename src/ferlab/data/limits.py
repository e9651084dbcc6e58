"""Resource limits of the data readers, and the byte streams that enforce them.

A hostile source must not cost unbounded memory or time: a 1 MB zip can hold gigabytes of zeros,
and a 1 KB PNG header can announce a 100,000 x 100,000 image. Every reader caps the size of each
file or member, the total decompressed size of a source, the pixels of each image (read from the
header, before decoding) and the length of a CSV line. Compression is recognised by its magic
bytes, not by the file name, and every compressed stream is read to its end so that its own
integrity check (gzip's CRC, xz's and bz2's checks) runs: a damaged archive is an error, never a
partial read.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ferlab.errors import DataError

MIB = 2 ** 20


@dataclass(frozen=True)
class ReaderLimits:
    member_bytes: int = 64 * MIB     # one image file or archive member (the largest FER2013 face is 3 kB)
    total_bytes: int = 2048 * MIB    # one source, decompressed (fer2013.csv is 287 MiB, the image tar 105 MiB)
    image_pixels: int = 40_000_000   # width x height of one image, from its header (as for photos)
    line_bytes: int = 64 * 1024      # one CSV line (a row of fer2013.csv is about 9 kB)
    entries: int = 1_000_000         # members of one archive, files of one folder (FER2013 has 35,887
                                     # images): a 9 MiB tar.gz of a million empty members takes 25 s and 0.6 GiB


DEFAULT_LIMITS = ReaderLimits()

# Compression name -> (magic bytes, opener over a binary file object).
COMPRESSIONS = {
    "gzip": (b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    "bzip2": (b"BZh", lambda raw: bz2.BZ2File(raw, mode="rb")),
    "xz": (b"\xfd7zXZ\x00", lambda raw: lzma.LZMAFile(raw, mode="rb")),
}
# What a damaged compressed stream raises, by library: gzip.BadGzipFile and zlib.error (gzip),
# OSError and ValueError (bz2), lzma.LZMAError, and EOFError for a stream cut short.
DECOMPRESSION_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)


def compression_of(path: Path) -> str | None:
    with open(path, "rb") as file:
        head = file.read(8)
    return next((name for name, (magic, _) in COMPRESSIONS.items() if head.startswith(magic)), None)


def describe_size(size: int) -> str:
    return f"{size / MIB:.0f} MiB" if size >= MIB else f"{size} bytes"


class BoundedStream(io.RawIOBase):
    """A read-only view of a (decompressed) stream that stops with a DataError once more than
    ``limit`` bytes have been read, and turns decompression failures into DataErrors naming the
    source. ``where`` (a callable) names the member being read, when there is one."""

    def __init__(self, inner: BinaryIO, source: str, limit: int, what: str = "decompressed", where=lambda: None,
                 closes: tuple = ()):
        self.inner, self.source, self.limit, self.what, self.where = inner, source, limit, what, where
        self.closes = (inner, *closes)  # file objects this stream owns
        self.count = 0

    def close(self) -> None:
        for owned in self.closes:
            owned.close()
        super().close()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self.inner.read(len(buffer))
        except DECOMPRESSION_ERRORS as error:
            # A checksum over the whole stream fails at its end: no one member is to blame.
            whole_stream = isinstance(error, gzip.BadGzipFile) and ("CRC" in str(error) or "length" in str(error))
            raise DataError(self.source, None if whole_stream else self.where(),
                            f"damaged data ({error.__class__.__name__}: {str(error)[:100] or 'stream ended early'})") from None
        self.count += len(data)
        if self.count > self.limit:
            raise DataError(self.source, None, f"{self.what} size is over the readers' limit of "
                                               f"{describe_size(self.limit)}")
        buffer[:len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read to the end, so that the compression's integrity check runs."""
        while self.read(MIB):
            pass


def open_source(path: Path, limits: ReaderLimits, where=lambda: None) -> tuple[io.BufferedReader, str | None]:
    """A file's bytes, decompressed if its magic bytes say so, capped at ``limits.total_bytes``.
    Returns the buffered stream and the compression's name (None for a plain file)."""
    compression = compression_of(path)
    raw = open(path, "rb")
    inner = COMPRESSIONS[compression][1](raw) if compression else raw
    stream = BoundedStream(inner, str(path), limits.total_bytes, "decompressed" if compression else "file", where,
                           closes=(raw,))
    return io.BufferedReader(stream, buffer_size=MIB), compression
