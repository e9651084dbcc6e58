"""A cache of decoded face sets, keyed by the source's content hash and the reader's options.

Decoding the full data set takes seconds; loading it back from here takes a fraction of one.
Files (CSV, archives) are keyed by the SHA-256 of their bytes; a folder by the relative paths,
sizes and modification times of its files (hashing 35,887 small files' bytes would cost about as
much as decoding them).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ferlab.data.archives import walk_files
from ferlab.data.faceset import FaceSet
from ferlab.errors import FerlabError
from ferlab.outputs import save_torch

CACHE_FORMAT = 6  # bump when a reader's output changes (or it refuses what it read), so stale entries are not reused


def cache_dir() -> Path:
    return Path(os.environ.get("FERLAB_CACHE", Path.home() / ".cache" / "ferlab"))


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    if path.is_dir():
        for full, relative in walk_files(path):  # as the reader walks it
            stat = os.stat(full) if full.exists() else os.lstat(full)  # a broken link has no target
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    else:
        with open(path, "rb") as file:
            digest = hashlib.file_digest(file, "sha256")
    return digest.hexdigest()


def cache_key(path: Path, options: dict) -> str:
    described = ",".join(f"{k}={options[k]}" for k in sorted(options))
    return hashlib.sha256(f"{CACHE_FORMAT}|{content_hash(path)}|{described}".encode()).hexdigest()[:32]


def load_cached(key: str) -> FaceSet | None:
    file = cache_dir() / f"faces-{key}.pt"
    if not file.exists():
        return None
    try:
        return read_faces(file)
    except Exception:  # a damaged or foreign file: decode again and overwrite it
        return None


def save_cached(key: str, faces: FaceSet) -> None:
    try:
        write_faces(cache_dir() / f"faces-{key}.pt", faces)
    except (OSError, FerlabError):
        pass  # a read-only home or a full disk is no reason to fail: the next load decodes again


def read_faces(file: Path) -> FaceSet:
    """A face set written by ``write_faces`` (tensors and plain values only: ``weights_only``)."""
    saved = torch.load(file, weights_only=True)
    return FaceSet(saved["images"], saved["labels"], saved["splits"], tuple(saved["ids"]),
                   saved["source"], saved["skipped"], tuple(saved["problems"]), saved["official_splits"],
                   tuple(saved["notes"]))


def write_faces(file: Path, faces: FaceSet) -> None:
    """``faces`` as one file, written whole or not at all (``ferlab.outputs``)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    save_torch({"images": faces.images, "labels": faces.labels, "splits": faces.splits,
                "ids": list(faces.ids), "source": faces.source, "skipped": faces.skipped,
                "problems": list(faces.problems), "official_splits": faces.official_splits,
                "notes": list(faces.notes)}, file)
