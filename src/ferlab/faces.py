"""Faces in real photos: read a photo safely, find the faces, crop them the way FER2013 was made.

Detection uses OpenCV's frontal-face Haar cascade, which ships inside ``opencv-python-headless``
(< 5: the OpenCV 5 wheels have no cascades), or dlib's HOG detector (``dlib-bin``, model compiled
in); both run offline. FER2013's faces were found by a
face detector and cropped roughly to the face, converted to gray and scaled to 48x48; the crop
here adds a small margin around the detector's box for the same framing.
"""

from __future__ import annotations

import math
import numbers
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ferlab.data.images import ImageProblem, decode_first_frame, read_image_file
from ferlab.errors import FerlabError
from ferlab.labels import IMAGE_SIZE

MAX_PIXELS = 40_000_000    # refuse photos above 40 megapixels (checked from the header, before decoding)
DETECT_SIDE = 1024         # detection runs on a copy whose longer side is at most this many pixels
CROP_MARGIN = 0.1          # fraction of the box added on each side before cropping
MIN_FACE = 0.05            # the smallest face: under 1, a fraction of the photo's shorter side; else pixels
MIN_NEIGHBORS = 5          # raw detections that must overlap for a face (OpenCV's merge threshold)


class PhotoError(FerlabError):
    """A file that cannot be used as a photo; the message names the file."""


@dataclass(frozen=True)
class Box:
    x: int  # left, pixels in the original photo
    y: int  # top
    w: int  # width
    h: int  # height
    score: float | None = None  # the detector's: raw detections merged into this box (None: not detected)

    def to_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]

    def widened(self, margin: float) -> Box:
        """This box with ``margin`` of its width and height added on each side: the region
        ``crop_face`` reads (it may leave the photo)."""
        pad_x, pad_y = round(self.w * margin), round(self.h * margin)
        return Box(self.x - pad_x, self.y - pad_y, self.w + 2 * pad_x, self.h + 2 * pad_y, self.score)


@dataclass(frozen=True)
class Photo:
    rgb: np.ndarray       # (H, W, 3) uint8, upright per its EXIF orientation
    note: str | None      # what a reader of the results should know (``Decoded.note``): first frame only, dark pixels


def read_photo(source: str | Path | bytes, name: str | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """``open_photo``'s pixels: (H, W, 3) uint8 RGB."""
    return open_photo(source, name, max_pixels).rgb


def open_photo(source: str | Path | bytes, name: str | None = None, max_pixels: int = MAX_PIXELS) -> Photo:
    """A photo file (or its bytes) -> its upright RGB pixels, and what its reader should know
    (frames after these left unread, 16-bit values that stay nearly black).

    Decoded as the data readers decode (``ferlab.data.images``): the size is read from the header
    first and an image above ``max_pixels`` is refused before any decoding (a decompression bomb
    never reaches memory); 16-bit images are scaled to 8 bits, not clipped. Unreadable, truncated
    or oversized files raise PhotoError naming the file.
    """
    name = name or (str(source) if not isinstance(source, bytes) else "upload")
    try:
        data = source if isinstance(source, bytes) else read_image_file(Path(source))
        decoded = decode_first_frame(data, max_pixels, upright=True)
    except OSError as error:
        raise PhotoError(f"{name}: cannot read ({error.strerror or error})") from None
    except ImageProblem as problem:
        raise PhotoError(f"{name}: {problem}") from None
    return Photo(np.asarray(decoded.image.convert("RGB")), decoded.note)


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


_LOCAL = threading.local()  # one detector of each kind per thread: a shared one is not safe under concurrent requests

Found = list[tuple[int, int, int, int, float]]  # (x, y, w, h, score) in the pixels of the image searched


def haar_faces(gray: np.ndarray, smallest: int) -> Found:
    """OpenCV's frontal-face Haar cascade; the score is how many raw detections merged into the
    box (at least MIN_NEIGHBORS)."""
    import cv2

    if not hasattr(_LOCAL, "classifier"):
        _LOCAL.classifier = _cascade()
    found, neighbours = _LOCAL.classifier.detectMultiScale2(cv2.equalizeHist(gray), scaleFactor=1.1,
                                                            minNeighbors=MIN_NEIGHBORS, minSize=(smallest, smallest))
    return [(*map(int, box), float(n)) for box, n in zip(found if len(found) else [], neighbours if len(found) else [])]


HOG_THRESHOLD = 0.1  # dlib's SVM score a face must reach (dlib's own is 0; BENCHMARKS.md has the sweep)


def hog_faces(gray: np.ndarray, smallest: int) -> Found:
    """dlib's HOG + linear SVM frontal-face detector (``pip install dlib-bin``; the model is
    compiled into the library). It finds faces of about 80 pixels and up, 40 with one upsampling,
    which it does when ``smallest`` asks for faces under 80 pixels. The score is the SVM margin."""
    try:
        import dlib
    except ImportError:
        raise FerlabError("the hog face detector needs dlib: pip install dlib-bin (or use --detector haar)") from None
    if not hasattr(_LOCAL, "hog"):
        _LOCAL.hog = dlib.get_frontal_face_detector()
    rectangles, scores, _ = _LOCAL.hog.run(np.ascontiguousarray(gray), 1 if smallest < 80 else 0, HOG_THRESHOLD)
    found = [(r.left(), r.top(), r.width(), r.height(), float(score)) for r, score in zip(rectangles, scores)]
    return [f for f in found if min(f[2], f[3]) >= smallest]


DETECTORS = {"hog": hog_faces, "haar": haar_faces}  # BENCHMARKS.md compares them on real photos
DEFAULT_DETECTOR = "hog"  # as many faces as Haar found and no false ones, a little faster (BENCHMARKS.md)


def min_face_pixels(min_face: float, shape: tuple[int, int]) -> int:
    """``min_face`` (pixels, or under 1 a fraction of the shorter side of ``shape``) in pixels."""
    if isinstance(min_face, bool) or not isinstance(min_face, numbers.Real) or not math.isfinite(min_face) \
            or min_face < 0:  # NaN passed every comparison and failed in round(), a traceback
        raise FerlabError(f"--min-face {min_face}: expected pixels (1 or more) or a fraction of the photo (0 to 1)")
    return round(min_face * min(shape)) if min_face < 1 else round(min_face)


@dataclass(frozen=True)
class Detection:
    """How faces are found: which detector, and the smallest face it may report."""
    detector: str = DEFAULT_DETECTOR  # a name of DETECTORS
    min_face: float = MIN_FACE        # pixels (1 or more), or under 1 a fraction of the photo's shorter side

    def __post_init__(self):
        if not isinstance(self.detector, str) or self.detector not in DETECTORS:
            raise FerlabError(f"unknown face detector {self.detector!r}; available: {', '.join(DETECTORS)}")
        min_face_pixels(self.min_face, (1, 1))  # a negative size is one line now, not at the first photo

    def rules_out_faces(self, shape: tuple[int, ...]) -> str | None:
        """Why no face can be found in a picture of ``shape`` (H, W, ...): ``min_face`` is over its
        shorter side (a photo came back with "no face found" and nothing said why); else None."""
        side = min(shape[:2])
        if min_face_pixels(self.min_face, shape[:2]) <= side:
            return None
        return f"--min-face {self.min_face:g} px is over this {shape[1]}x{shape[0]} picture's shorter side"


def detect_faces(gray: np.ndarray, min_face: float = MIN_FACE, detector: str = DEFAULT_DETECTOR,
                 min_size: int = 24) -> list[Box]:
    """Faces in a (H, W) uint8 image, largest first (ties by position, so one photo always gives
    one order), each with its detector's score. ``detector``: a name of DETECTORS. Detection
    runs on a copy scaled so that its longer side is at most DETECT_SIDE; boxes are mapped back to
    the original pixels. Faces smaller than ``min_face`` (``min_face_pixels``) are left out: the
    false faces in large photos are small patches of texture. A photo too small or too thin to
    hold a face of ``min_size`` pixels (after that scaling) has none."""
    import cv2

    Detection(detector, min_face)  # checks both
    scale = min(1.0, DETECT_SIDE / max(gray.shape))
    size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))  # (width, height), as OpenCV wants
    smallest = max(min_size, round(min_face_pixels(min_face, gray.shape) * scale))
    if min(size) < smallest:  # e.g. a 1x5000 strip: OpenCV would raise instead of finding nothing
        return []
    small = gray if scale == 1.0 else cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    boxes = [Box(*(round(v / scale) for v in (x, y, w, h)), score=round(score, 3))
             for x, y, w, h, score in DETECTORS[detector](small, smallest)]
    return sorted(boxes, key=lambda b: (-b.w * b.h, b.y, b.x, b.w, b.h))


def crop_face(gray: np.ndarray, box: Box, margin: float = CROP_MARGIN) -> np.ndarray:
    """A 48x48 uint8 crop of ``box`` widened by ``margin`` on each side (edges repeated where the
    widened box leaves the photo)."""
    seen = box.widened(margin)
    left, top, right, bottom = seen.x, seen.y, seen.x + seen.w, seen.y + seen.h
    border = max(0, -left, -top, right - gray.shape[1], bottom - gray.shape[0])
    padded = np.pad(gray, border, mode="edge") if border else gray
    region = padded[top + border:bottom + border, left + border:right + border]
    return np.asarray(Image.fromarray(region).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR))
