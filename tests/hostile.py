"""Builders of hostile inputs for the fault and fuzz tests: damaged archives, link members, bombs,
16-bit and oversized images. Everything is generated into a temporary folder."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib

import numpy as np
from PIL import Image


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def with_significant_bits(png: bytes, bits: int) -> bytes:
    """``png`` with an sBIT chunk after its header, stating ``bits`` significant bits of gray."""
    chunk = b"sBIT" + bytes([bits])
    end_of_header = 8 + 8 + 13 + 4  # signature; IHDR's length, type, 13 bytes of data and CRC
    return png[:end_of_header] + struct.pack(">I", 1) + chunk + struct.pack(">I", zlib.crc32(chunk)) + png[end_of_header:]


def announced_png(width: int, height: int) -> bytes:
    """A small, valid PNG whose header announces ``width`` x ``height`` pixels: a decompression
    bomb as far as any reader that trusts the header is concerned."""
    data = bytearray(png_bytes(np.zeros((8, 8), dtype=np.uint8)))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    return bytes(data)


def tar_bytes(members: list[tuple[str, bytes | None, dict]], compression: str = "") -> bytes:
    """A tar archive; each member is (name, data, TarInfo attributes), data None for links."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as archive:
        for name, data, attributes in members:
            info = tarfile.TarInfo(name)
            for key, value in attributes.items():
                setattr(info, key, value)
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (0o120777 << 16)
            archive.writestr(info, target)
    return buffer.getvalue()


def face_tree(generator: np.random.Generator, count: int = 6) -> dict[str, bytes]:
    """``count`` random 48x48 faces as PNGs in the image-folder layout, across splits and classes."""
    classes = ("happy", "sad", "angry", "neutral", "fear", "surprise", "disgust")
    splits = (("train", "Training"), ("test", "PublicTest"), ("test", "PrivateTest"))
    tree = {}
    for i in range(count):
        folder, prefix = splits[i % 3]
        face = generator.integers(0, 256, (48, 48)).astype(np.uint8)
        tree[f"fer/{folder}/{classes[i % 7]}/{prefix}_{i}.png"] = png_bytes(face)
    return tree
