"""Decoding untrusted image bytes into 8-bit gray or RGB, the one way every reader does it.

Used by the data readers (faces), ``ferlab photo``, ``ferlab serve`` and ``explain --image``, so a
16-bit PNG or an oversized image is treated alike everywhere:

- the pixel count is read from the header and refused above the limit before anything is decoded
  (a decompression bomb never reaches memory, and Pillow's own DecompressionBombError never fires);
- 16-bit and 32-bit images are scaled to 8 bits (65535 -> 255), where Pillow's ``convert("L")``
  would clip every value above 255 to white; a PNG that states fewer significant bits (its sBIT
  chunk: 12-bit data in 16-bit samples) is scaled by its own range (4095 -> 255);
- anything a decoder raises on damaged bytes becomes an ``ImageProblem`` with a short message.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ferlab.data.limits import DEFAULT_LIMITS, describe_size
from ferlab.labels import IMAGE_SIZE

# Pillow's modes for one channel of more than 8 bits, and the largest value each can hold.
WIDE_GRAY_MAX = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageProblem(ValueError):
    """Image bytes that cannot be used; the message says why (the caller adds the file name)."""


def file_status(path: Path) -> os.stat_result:
    """``path.stat()``, where a name holding a NUL character (no file system has one; a caller's
    string can) is an OSError as a missing file's is, not Python's ValueError."""
    try:
        return path.stat()
    except ValueError:
        raise OSError(errno.EINVAL, "a file name cannot hold a NUL character") from None


def read_image_file(path: Path, max_bytes: int = DEFAULT_LIMITS.member_bytes) -> bytes:
    """A file's bytes for decoding, refusing what is not a regular file (a FIFO would block
    forever) or is larger than ``max_bytes``. Raises ImageProblem; OSError passes through."""
    info = file_status(path)
    if not stat.S_ISREG(info.st_mode):
        raise ImageProblem("not a regular file (a folder, device, socket or FIFO)")
    if info.st_size > max_bytes:
        raise ImageProblem(f"file is {describe_size(info.st_size)}, over the limit of {describe_size(max_bytes)}")
    return path.read_bytes()


def is_wide_gray(image: Image.Image) -> bool:
    return image.mode in WIDE_GRAY_MAX or image.mode.startswith("I;16")


def to_eight_bits(image: Image.Image, bits: int | None = None) -> Image.Image:
    """A decoded image as mode "L" (one channel) or "RGB". Wide gray modes are scaled by their
    range: "I;16*" and "I" (16-bit PNG and TIFF) by 255/65535, or by 255/(2**bits - 1) where the
    file states its significant ``bits`` (values above that range clip to white); float ("F")
    images in [0, 1] by 255, others clipped to 0..255; a float image with NaN or infinite pixels
    is an ImageProblem (read as black, or as out of range, it would be answered as some other face)."""
    if is_wide_gray(image):
        full = (1 << bits) - 1 if bits else WIDE_GRAY_MAX.get(image.mode, 65535)
        values = np.asarray(image, dtype=np.float64) * (255.0 / full)
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if bad := int(values.size - np.count_nonzero(np.isfinite(values))):
            raise ImageProblem(f"float image with {bad} NaN or infinite pixel{'s' if bad > 1 else ''} of {values.size}")
        values = values * 255.0 if values.size and values.min() >= 0 and values.max() <= 1 else values
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("L", "RGB"):
        return image
    if image.mode in ("1", "LA", "La") or (image.mode == "P" and image.palette and image.palette.mode == "L"):
        return image.convert("L")
    return image.convert("RGB")  # palettes, RGBA, CMYK, YCbCr, LAB, HSV


def png_significant_bits(data: bytes) -> int | None:
    """The significant bits of a PNG's gray samples as its sBIT chunk states them (12 for 12-bit
    data in 16-bit samples), or None where it states none. Reads the chunks before the pixels."""
    position = len(PNG_SIGNATURE)
    if not data.startswith(PNG_SIGNATURE):
        return None
    while position + 9 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        if kind in (b"IDAT", b"IEND"):
            return None
        if kind == b"sBIT":
            bits = data[position + 8]
            return bits if 1 <= bits <= 16 else None
        position += 12 + length  # length, type, data, CRC
    return None


def pixels_note(image: Image.Image, data: bytes, bits: int | None) -> str | None:
    """What ``to_eight_bits`` cannot show of ``image`` as it was meant, or None where the file
    states its significant ``bits``: values clipped to white, or 16-bit values that come out nearly
    black. Either way the pixels are read as the rule says, not rescaled: one face of a set would
    then be read brighter than the next."""
    return None if bits else clipped_note(image) or dark_note(image, data)


def clipped_note(image: Image.Image) -> str | None:
    """A float image (not in [0, 1]) with values above 255, or a 32-bit one above 65535: clipped to
    white, where a float TIFF of raw counts (0..4095) came out white without a word."""
    if image.mode == "F":
        kind, top = "float", 255
    elif is_wide_gray(image):
        kind, top = "32-bit", WIDE_GRAY_MAX.get(image.mode, 65535)
    else:
        return None
    peak = float(np.asarray(image).max())
    if peak <= top:
        return None
    return f"its {kind} values reach {peak:g}, above the 0..{top} it is read in, so they are clipped to white: scale them"


def dark_note(image: Image.Image, data: bytes) -> str | None:
    """A 16-bit image whose values all stay under 4096 (12-bit, or 8-bit, data saved unscaled),
    which comes out nearly black (no face found, nothing said); a 16-bit colour PNG too, which
    Pillow reads at its high bytes (so a state of bits could not bring the low ones back)."""
    if is_wide_gray(image):
        peak = int(np.asarray(image).max())
        reach = f"reach only {peak}" if 0 < peak < 4096 else None
        remedy = "scale it to the full range or state its bits in a PNG sBIT chunk"
    elif image.mode in ("RGB", "RGBA") and png_bit_depth(data) == 16:
        high = int(np.asarray(image)[..., :3].max())  # the high bytes
        reach = f"stay under {(high + 1) * 256}" if high < 16 else None  # 0: under 256, or black
        remedy = "scale it to the full range"
    else:
        return None
    return reach and (f"its 16-bit values {reach} of 65535, as 12-bit data saved unscaled would, so it is read "
                      f"nearly black: {remedy}")


def png_bit_depth(data: bytes) -> int | None:
    """The bits per sample a PNG's header states, or None for another format."""
    return data[24] if data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) > 24 else None


SIGNATURES = {PNG_SIGNATURE: "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF", b"GIF89a": "GIF",
              b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}  # first bytes of the formats photos come in
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}


def photo_format(data: bytes) -> str | None:
    """The photo format ``data`` starts as (PNG, JPEG, GIF, TIFF, WebP, AVIF, HEIC), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[4:8] == b"ftyp":  # ISO media: the brand says which (an MP4 is none of these)
        return "HEIC" if data[8:12] in HEIF_BRANDS else "AVIF" if data[8:12] in (b"avif", b"avis") else None
    return next((name for magic, name in SIGNATURES.items() if data.startswith(magic)), None)


def unreadable(data: bytes) -> str:
    """Why Pillow found no format in ``data``: a photo's format named by its first bytes where it
    has one (a damaged PNG was "no image format Pillow knows"; an iPhone's HEIC is not damaged, but
    Pillow cannot read it), else that it is not an image."""
    kind = photo_format(data)
    if kind == "HEIC":
        return "a HEIC/HEIF photo (an iPhone's format), which Pillow cannot read; convert it to JPEG or PNG"
    if kind == "TIFF" and tiff_layout_unknown(data):
        return ("a TIFF whose pixel layout Pillow cannot read (colour in floating point, or another rare "
                "kind of sample); convert it to PNG or JPEG")
    if kind:
        return f"damaged {kind} (it starts as one, but Pillow cannot read it)"
    return "not an image (no image format Pillow knows)"


def tiff_layout_unknown(data: bytes) -> bool:
    """Whether Pillow's TIFF reader parsed the header of ``data`` and refused its kind of pixels
    (a float RGB TIFF, as OpenCV writes one, was "damaged TIFF")."""
    from PIL import TiffImagePlugin

    try:
        TiffImagePlugin.TiffImageFile(io.BytesIO(data)).close()
    except SyntaxError as error:
        return str(error) == "unknown pixel mode"
    except Exception:  # noqa: BLE001 - a damaged header raises anything
        return False
    return False


class Decoded(NamedTuple):
    image: Image.Image       # 8-bit "L" or "RGB"
    more_frames: bool        # an animated GIF, PNG or WebP, a multi-page TIFF: frames after this one left unread
    pixels_note: str | None  # ``pixels_note``: clipped to white, or nearly black

    @property
    def note(self) -> str | None:
        """What a reader of the results should know, or None."""
        frames = "first frame only: an animated or multi-page image (ferlab video reads every frame)" \
            if self.more_frames else None
        return "; ".join(note for note in (frames, self.pixels_note) if note) or None


def decode_first_frame(data: bytes, max_pixels: int = DEFAULT_LIMITS.image_pixels, upright: bool = False) -> Decoded:
    """Image bytes -> a loaded 8-bit "L" or "RGB" image (``upright``: turned per its EXIF
    orientation; an animated or multi-page image's first frame), whether frames after it were left
    unread (not the previews an MPO camera JPEG carries), and a note on pixels that could not be
    read as meant. Raises ImageProblem for empty, unknown, damaged or oversized images."""
    return decode(data, max_pixels, upright, look_for_frames=True)


def decode(data: bytes, max_pixels: int, upright: bool, look_for_frames: bool) -> Decoded:
    """``decode_first_frame``; the data readers' faces are not searched for a second frame."""
    if not data:
        raise ImageProblem("empty file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size  # from the header; nothing decoded yet
            if width * height > max_pixels:
                raise ImageProblem(f"image is {width}x{height} ({width * height / 1e6:.0f} MP), "
                                   f"above the limit of {max_pixels / 1e6:.0f} MP")
            if width < 1 or height < 1:
                raise ImageProblem(f"image is {width}x{height}: it has no pixels")
            more_frames = look_for_frames and has_more_frames(image)
            image.load()
            decoded = ImageOps.exif_transpose(image) if upright else image
            bits = png_significant_bits(data) if is_wide_gray(decoded) else None
            return Decoded(to_eight_bits(decoded, bits), more_frames, pixels_note(decoded, data, bits))
    except ImageProblem:
        raise
    except Image.DecompressionBombError as error:  # Pillow refuses some sizes in Image.open itself
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(pixels.group(1)) / 1e6:.0f} MP" if pixels else "too many pixels"
        raise ImageProblem(f"image has {size}, above the limit of {max_pixels / 1e6:.0f} MP") from None
    except MemoryError:
        raise ImageProblem("image too large to decode in memory") from None
    except UnidentifiedImageError:
        raise ImageProblem(unreadable(data)) from None
    except Exception as error:  # noqa: BLE001 - decoders of damaged bytes raise anything (struct.error, IndexError, ...)
        raise ImageProblem(f"truncated or corrupt image ({error.__class__.__name__}: {str(error)[:80]})") from None


def has_more_frames(image: Image.Image) -> bool:
    """Whether an opened image has a second frame (Pillow looks for that one only, not all of
    them, and returns to the first); a second frame too damaged to find counts as none."""
    try:
        return bool(getattr(image, "is_animated", False)) and image.format != "MPO"
    except Exception:  # noqa: BLE001 - decoders of damaged bytes raise anything
        return False


def decode_face(data: bytes, resize: bool,
                max_pixels: int = DEFAULT_LIMITS.image_pixels) -> tuple[np.ndarray, str | None] | str:
    """Image bytes -> ((48, 48) uint8 grayscale, ``pixels_note``: what could not be shown as meant),
    or a string saying what is wrong."""
    try:
        decoded = decode(data, max_pixels, upright=False, look_for_frames=False)
    except ImageProblem as problem:
        return str(problem)
    gray = decoded.image.convert("L")
    if gray.size != (IMAGE_SIZE, IMAGE_SIZE):
        if not resize:
            return f"image is {gray.size[0]}x{gray.size[1]}, expected 48x48 (pass --resize to resize it)"
        gray = gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.uint8), decoded.pixels_note
