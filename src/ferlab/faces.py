"""Faces in real photos: read a photo safely, find the faces, crop them the way FER2013 was made.

Detection uses OpenCV's frontal-face Haar cascade, which ships inside ``opencv-python-headless``
(< 5: the OpenCV 5 wheels have no cascades) and runs offline. FER2013's faces were found by a
face detector and cropped roughly to the face, converted to gray and scaled to 48x48; the crop
here adds a small margin around the detector's box for the same framing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ferlab.data.images import ImageProblem, decode_image, read_image_file
from ferlab.errors import FerlabError
from ferlab.labels import IMAGE_SIZE

MAX_PIXELS = 40_000_000    # refuse photos above 40 megapixels (checked from the header, before decoding)
DETECT_SIDE = 1024         # detection runs on a copy whose longer side is at most this many pixels
CROP_MARGIN = 0.1          # fraction of the box added on each side before cropping


class PhotoError(FerlabError):
    """A file that cannot be used as a photo; the message names the file."""


@dataclass(frozen=True)
class Box:
    x: int  # left, pixels in the original photo
    y: int  # top
    w: int  # width
    h: int  # height

    def to_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


def read_photo(source: str | Path | bytes, name: str | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A photo file (or its bytes) -> (H, W, 3) uint8 RGB, upright per its EXIF orientation.

    Decoded as the data readers decode (``ferlab.data.images``): the size is read from the header
    first and an image above ``max_pixels`` is refused before any decoding (a decompression bomb
    never reaches memory); 16-bit images are scaled to 8 bits, not clipped. Unreadable, truncated
    or oversized files raise PhotoError naming the file.
    """
    name = name or (str(source) if not isinstance(source, bytes) else "upload")
    try:
        data = source if isinstance(source, bytes) else read_image_file(Path(source))
        image = decode_image(data, max_pixels, upright=True)
    except OSError as error:
        raise PhotoError(f"{name}: cannot read ({error.strerror or error})") from None
    except ImageProblem as problem:
        raise PhotoError(f"{name}: {problem}") from None
    return np.asarray(image.convert("RGB"))


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 with ITU-R 601 luma, as PIL's 'L' conversion."""
    return np.asarray(Image.fromarray(rgb).convert("L"))


def _cascade():
    import cv2  # imported here: only photo commands need OpenCV

    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    classifier = cv2.CascadeClassifier(str(path))
    if classifier.empty():
        raise FerlabError(f"{path}: OpenCV's face cascade is missing (OpenCV 5 wheels ship none; "
                          "install opencv-python-headless<5)")
    return classifier


_LOCAL = threading.local()  # one classifier per thread: a shared one is not safe under concurrent requests


def detect_faces(gray: np.ndarray, min_size: int = 24) -> list[Box]:
    """Faces in a (H, W) uint8 image, largest first (ties by position, so one photo always gives
    one order). Detection runs on a copy scaled so that its longer side is at most DETECT_SIDE;
    boxes are mapped back to the original pixels. A photo too small or too thin to hold a face of
    ``min_size`` pixels (after that scaling) has none."""
    import cv2

    if not hasattr(_LOCAL, "classifier"):
        _LOCAL.classifier = _cascade()
    scale = min(1.0, DETECT_SIDE / max(gray.shape))
    size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))  # (width, height), as OpenCV wants
    if min(size) < min_size:  # e.g. a 1x5000 strip: OpenCV would raise instead of finding nothing
        return []
    small = gray if scale == 1.0 else cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    found = _LOCAL.classifier.detectMultiScale(cv2.equalizeHist(small), scaleFactor=1.1, minNeighbors=5,
                                         minSize=(min_size, min_size))
    boxes = [Box(*(round(v / scale) for v in box)) for box in (found if len(found) else [])]
    return sorted(boxes, key=lambda b: (-b.w * b.h, b.y, b.x, b.w, b.h))


def crop_face(gray: np.ndarray, box: Box, margin: float = CROP_MARGIN) -> np.ndarray:
    """A 48x48 uint8 crop of ``box`` widened by ``margin`` on each side (edges repeated where the
    widened box leaves the photo)."""
    pad_x, pad_y = round(box.w * margin), round(box.h * margin)
    left, top = box.x - pad_x, box.y - pad_y
    right, bottom = box.x + box.w + pad_x, box.y + box.h + pad_y
    border = max(0, -left, -top, right - gray.shape[1], bottom - gray.shape[0])
    padded = np.pad(gray, border, mode="edge") if border else gray
    region = padded[top + border:bottom + border, left + border:right + border]
    return np.asarray(Image.fromarray(region).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR))
