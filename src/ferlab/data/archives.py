"""The files of an image folder, a ``.zip`` or a ``.tar.*``, as entries: a name and its bytes, or a
name and what is wrong with it. Nothing is dropped without a word:

- a damaged archive (one its own format rejects: a bad tar header, a gzip/xz/bz2 stream that fails
  its check or ends early, a zip member whose CRC or header is wrong) stops the read with a
  DataError naming the archive and, where known, the member;
- links are read safely: a tar hard link or a symlink (tar or zip) pointing at a member inside the
  archive reads that member's bytes; one pointing outside the archive, or at nothing, is a bad
  entry, named; so are devices and FIFOs;
- in a folder, a broken symlink or a file that cannot be read is a bad entry (``--skip-bad-rows``
  skips and counts it), and symlinked folders are followed once each;
- every member and file is capped at ``limits.member_bytes`` and the whole source at
  ``limits.total_bytes`` (see ``ferlab.data.limits``).
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ferlab.data.limits import DECOMPRESSION_ERRORS, MIB, BoundedStream, ReaderLimits, describe_size, open_source
from ferlab.errors import DataError

MAX_LINK_HOPS = 32  # a chain of symlinks longer than this is a loop
ZIP_ENCRYPTED = 0x1  # general-purpose flag bit 0 of a zip entry: its data needs a password


@dataclass(frozen=True)
class Entry:
    name: str                  # path inside the folder or archive, "/"-separated
    data: bytes | None = None  # the file's bytes, or None with a problem
    problem: str | None = None
    is_folder: bool = False    # a folder that could not be listed: reported whatever its name


def too_large(size: int, limits: ReaderLimits) -> str:
    return f"member is {describe_size(size)}, over the readers' limit of {describe_size(limits.member_bytes)}"


class TotalBudget:
    """Counts the bytes read from a source against ``limits.total_bytes`` and its entries against
    ``limits.entries``."""

    def __init__(self, source: str, limits: ReaderLimits):
        self.source, self.limit, self.used = source, limits.total_bytes, 0
        self.entry_limit, self.entries = limits.entries, 0

    def spend(self, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            raise DataError(self.source, None, f"decompressed size is over the readers' limit of {describe_size(self.limit)}")

    def count_entries(self, count: int = 1) -> None:
        self.entries += count
        if self.entries > self.entry_limit:
            raise DataError(self.source, None, f"holds over {self.entry_limit:,} entries, the readers' limit")


# --- folders --------------------------------------------------------------------------------------

def walk_files(root: Path, unlisted: list[OSError] | None = None) -> Iterator[tuple[Path, str]]:
    """(path, "/"-separated path relative to ``root``) of every file under ``root``, sorted,
    following symlinked folders but entering each real folder once (no symlink loops). Folders
    that cannot be listed are appended to ``unlisted``."""
    visited: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True, onerror=None if unlisted is None else unlisted.append):
        identity = os.stat(folder)
        if (identity.st_dev, identity.st_ino) in visited:  # a symlink loop, or a second way in
            dirs.clear()
            continue
        visited.add((identity.st_dev, identity.st_ino))
        dirs.sort()
        for name in sorted(files):
            full = Path(folder, name)
            yield full, full.relative_to(root).as_posix()


def iter_folder(root: Path, limits: ReaderLimits) -> Iterator[Entry]:
    budget = TotalBudget(str(root), limits)
    unlisted: list[OSError] = []  # folders os.walk could not list: reported, not skipped
    for full, relative in walk_files(root, unlisted):
        budget.count_entries()
        yield read_folder_file(full, relative, limits, budget)
    for error in unlisted:
        where = Path(error.filename).relative_to(root).as_posix() if error.filename else str(root)
        yield Entry(where, problem=f"cannot list folder ({error.strerror or error})", is_folder=True)


def read_folder_file(full: Path, relative: str, limits: ReaderLimits, budget: TotalBudget) -> Entry:
    try:
        info = full.stat()  # follows a symlink to its target
    except OSError as error:
        if full.is_symlink():
            return Entry(relative, problem=f"broken symbolic link (to {os.readlink(full)!r})")
        return Entry(relative, problem=f"cannot read ({error.strerror or error})")
    if not stat.S_ISREG(info.st_mode):
        return Entry(relative, problem="not a regular file (a device, socket or FIFO)")
    if info.st_size > limits.member_bytes:
        return Entry(relative, problem=too_large(info.st_size, limits))
    try:
        data = full.read_bytes()
    except OSError as error:
        return Entry(relative, problem=f"cannot read ({error.strerror or error})")
    budget.spend(len(data))
    return Entry(relative, data)


# --- links inside archives -----------------------------------------------------------------------

def link_target(member_name: str, target: str, symbolic: bool) -> str | None:
    """The archive path a link points to, or None when it points outside the archive. A symlink's
    target is relative to the link's folder; a hard link's to the archive's root."""
    if not target or target.startswith("/") or "\\" in target:
        return None
    joined = posixpath.join(posixpath.dirname(member_name), target) if symbolic else target
    normal = posixpath.normpath(joined)
    return None if normal == ".." or normal.startswith("../") or normal == "." else normal


class Links:
    """Member bytes by normalised name, and links to resolve once the archive has been read (a
    symlink may point at a later member)."""

    def __init__(self):
        self.members: dict[str, bytes] = {}
        self.symlinks: dict[str, str | None] = {}  # link name -> normalised target (None: outside)
        self.order: list[str] = []

    def add_member(self, name: str, data: bytes) -> None:
        self.members[posixpath.normpath(name)] = data

    def add_symlink(self, name: str, target: str) -> None:
        self.symlinks[posixpath.normpath(name)] = link_target(name, target, symbolic=True)
        self.order.append(name)

    def resolve(self, name: str) -> Entry:
        """The bytes a symlink leads to, following chains of symlinks inside the archive."""
        current: str | None = posixpath.normpath(name)
        for _ in range(MAX_LINK_HOPS):
            if current not in self.symlinks:
                break
            current = self.symlinks[current]
            if current is None:
                return Entry(name, problem="symbolic link pointing outside the archive (refused)")
        else:
            return Entry(name, problem="symbolic link loop")
        if current not in self.members:
            return Entry(name, problem=f"symbolic link to {current!r}, which is not a file in the archive")
        return Entry(name, self.members[current])

    def pending(self) -> Iterator[Entry]:
        for name in self.order:
            yield self.resolve(name)


# --- zip ----------------------------------------------------------------------------------------

def open_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str):
    """``archive.open(info)``; a member needing a password or a compression method zipfile cannot
    read is a DataError saying so (they were "damaged", or a traceback when streamed)."""
    if info.flag_bits & ZIP_ENCRYPTED:
        raise DataError(source, info.filename, "encrypted (password-protected); extract the archive with "
                                               "its password and read the folder")
    try:
        return archive.open(info)
    except NotImplementedError:  # deflate64, PPMd, ...
        raise DataError(source, info.filename, f"compressed by zip method {info.compress_type}, which Python "
                                               "cannot read; re-pack the archive with deflate, zip's default") from None


def is_zip_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)  # 3: made on Unix


def check_zip_entry_count(archive: zipfile.ZipFile, source: str, expected: int) -> None:
    """The central directory holds as many entries as its end record says (``expected``). zipfile
    reads entries until the directory's size is used up and never counts them, so one damaged
    length field (a comment length, say) lets an entry swallow the next one's header and a face
    vanish unnoticed."""
    if expected != len(archive.infolist()):
        raise DataError(source, None, f"damaged zip archive (its end record lists {expected} entries, "
                                      f"its central directory {len(archive.infolist())})")


def announced_zip_entries(path: Path) -> int:
    """The entries a zip's end record lists (0 where it has none: zipfile then says it is no zip)."""
    with open(path, "rb") as file:
        end = zipfile._EndRecData(file)  # the record zipfile itself parses (private, stable since Python 2)
    return end[zipfile._ECD_ENTRIES_TOTAL] if end else 0


def iter_zip(path: Path, limits: ReaderLimits) -> Iterator[Entry]:
    """Every member is read (so its CRC and local header are checked), also those the caller will
    pass over by name: a damaged name in the central directory cannot hide a face."""
    source = str(path)
    budget = TotalBudget(source, limits)
    links = Links()
    try:
        announced = announced_zip_entries(path)
        budget.count_entries(announced)  # before zipfile parses every one of them
        archive = zipfile.ZipFile(path)
    except DataError:  # a ValueError, but not a damaged archive
        raise
    except (zipfile.BadZipFile, *DECOMPRESSION_ERRORS) as error:
        raise DataError(source, None, f"damaged or not a zip archive ({error})") from None
    with archive:
        check_zip_entry_count(archive, source, announced)
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.file_size > limits.member_bytes:
                yield Entry(info.filename, problem=too_large(info.file_size, limits))
                continue
            try:
                with open_zip_member(archive, info, source) as member:
                    data = member.read(limits.member_bytes + 1)
            except DataError:  # encrypted, or of a method zipfile cannot read: named as such
                raise
            except (zipfile.BadZipFile, RuntimeError, *DECOMPRESSION_ERRORS) as error:
                raise DataError(source, info.filename, f"damaged zip member ({error.__class__.__name__}: "
                                                       f"{str(error)[:100]})") from None
            budget.spend(len(data))
            if is_zip_symlink(info):
                links.add_symlink(info.filename, data.decode("utf-8", "replace"))
                continue
            links.add_member(info.filename, data)
            yield Entry(info.filename, data)
    yield from links.pending()


# --- tar ----------------------------------------------------------------------------------------

class DamagedTar(Exception):
    """Raised through tarfile's reader, which would otherwise end the archive at a bad header."""


class StrictTarInfo(tarfile.TarInfo):
    """tarfile treats a damaged header after the first member as the end of the archive, and so
    reads a corrupted archive in part without a word (GNU tar reports it). Only the zero block
    that marks the end of an archive may end it here: a header that fails its checksum, or data
    that stop at a member boundary without the marker (a truncated archive), are errors."""

    @classmethod
    def fromtarfile(cls, tarfile_):
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.EOFHeaderError:
            raise
        except tarfile.EmptyHeaderError:
            if tarfile_.offset == 0:
                raise
            raise DamagedTar(f"the archive stops at byte {tarfile_.offset} without its end-of-archive "
                             "marker (truncated)") from None
        except tarfile.HeaderError as error:
            if tarfile_.offset == 0:
                raise DamagedTar(f"not a tar archive ({error})") from None
            raise DamagedTar(f"damaged tar header at byte {tarfile_.offset} ({error})") from None


def iter_tar(path: Path, limits: ReaderLimits) -> Iterator[Entry]:
    source = str(path)
    current: list[str | None] = [None]  # the member being read, for error messages
    stream, _ = open_source(path, limits, where=lambda: current[0])
    links, budget = Links(), TotalBudget(source, limits)  # the stream counts the bytes, the budget the entries
    with stream:
        try:
            # Stream mode ("r|") reads the archive once, front to back: the fast way for .xz.
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=StrictTarInfo) as archive:
                for member in archive:
                    current[0] = member.name
                    budget.count_entries()
                    entry = read_tar_member(archive, member, links, limits, source)
                    if entry is not None:
                        yield entry
                    current[0] = None
            stream.raw.drain()  # the rest of a compressed stream: its checksum is at its end
        except DataError:
            raise
        except DamagedTar as error:
            raise DataError(source, current[0], str(error)) from None
        except (tarfile.TarError, *DECOMPRESSION_ERRORS) as error:
            raise DataError(source, current[0], f"damaged tar archive ({error.__class__.__name__}: "
                                                f"{str(error)[:100] or 'data ended early'})") from None
    yield from links.pending()


def read_tar_member(archive: tarfile.TarFile, member: tarfile.TarInfo, links: Links, limits: ReaderLimits,
                    source: str) -> Entry | None:
    if member.isdir():
        return None
    if member.issym():
        links.add_symlink(member.name, member.linkname)
        return None
    if member.islnk():  # a hard link always names an earlier member
        target = link_target(member.name, member.linkname, symbolic=False)
        if target is None:
            return Entry(member.name, problem=f"hard link to {member.linkname!r}, outside the archive (refused)")
        if target not in links.members:
            return Entry(member.name, problem=f"hard link to {member.linkname!r}, which is not a file in the archive")
        return Entry(member.name, links.members[target])
    if not member.isfile():
        return Entry(member.name, problem="not a regular file (a device or FIFO entry)")
    if member.size > limits.member_bytes:
        return Entry(member.name, problem=too_large(member.size, limits))
    data = archive.extractfile(member).read()
    if len(data) != member.size:
        raise DataError(source, member.name, "member data ends early")
    links.add_member(member.name, data)
    return Entry(member.name, data)


def iter_entries(path: Path, limits: ReaderLimits) -> Iterator[Entry]:
    if path.is_dir():
        return iter_folder(path, limits)
    if path.name.lower().endswith(".zip"):
        return iter_zip(path, limits)
    return iter_tar(path, limits)


# --- one member as a stream ----------------------------------------------------------------------

@contextmanager
def open_member(path: Path, name: str, limits: ReaderLimits) -> Iterator[io.BufferedReader]:
    """The bytes of member ``name`` of a zip or tar, streamed (a member may be far larger than
    ``limits.member_bytes``: Kaggle's fer2013.csv is 287 MiB) and capped at ``limits.total_bytes``.
    A damaged archive, or one that ends inside the member, is a DataError naming the member; a
    tar's compressed stream is read to its end so that its checksum runs."""
    source = str(path)
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive, open_zip_member(archive, archive.getinfo(name), source) as member:
                yield bounded(member, source, name, limits)  # zipfile checks the member's CRC at its end
            return
        stream, _ = open_source(path, limits, where=lambda: name)
        with stream, tarfile.open(fileobj=stream, mode="r|", tarinfo=StrictTarInfo) as archive:
            member = next((m for m in archive if m.name == name), None)
            if member is None or not member.isfile():
                raise DataError(source, name, "not a regular file in the archive")
            yield bounded(archive.extractfile(member), source, name, limits)
            stream.raw.drain()
    except DataError:  # a bad row of the member, or the limits: already named
        raise
    except DamagedTar as error:
        raise DataError(source, name, str(error)) from None
    except (zipfile.BadZipFile, tarfile.TarError, *DECOMPRESSION_ERRORS) as error:
        raise DataError(source, name, f"damaged archive ({error.__class__.__name__}: "
                                      f"{str(error)[:100] or 'data ended early'})") from None


def bounded(member, source: str, name: str, limits: ReaderLimits) -> io.BufferedReader:
    return io.BufferedReader(BoundedStream(member, source, limits.total_bytes, "member", lambda: name), buffer_size=MIB)
