"""From a photo to explained emotions: detect every face, classify its 48x48 crop, and optionally
explain it with Grad-CAM (occlusion where Grad-CAM does not apply). Shared by ``ferlab photo`` and
``ferlab serve``; thread-safe on one model (no hooks; the model is in eval mode and only ever set to
eval mode again). A batch of photo files, their outputs and summary: ``ferlab.photo_batch``.

A face crop someone already has (a 48x48 FER2013 face, a tight crop from a film) holds too little
around the face for the detector. ``mode`` says what to do: ``detect`` faces, take the whole image
as one ``crop``, or ``auto``: a small, nearly square image (AUTO_CROP_MIN to AUTO_CROP_SIDE pixels
a side, sides within 3:4) in which the detector finds nothing, or one face filling at least
AUTO_CROP_FILL of it, is a face crop and is taken whole (the detector's box inside a 48x48 FER2013
face would crop the crop); any other image gets the detector's faces. Each face says which way it
was found."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ferlab.checkpoint import LoadedModel
from ferlab.errors import FerlabError
from ferlab.explain.postprocess import OVERLAY_ALPHA, heat_rgb, normalize, relu
from ferlab.faces import CROP_MARGIN, Box, Detection, Photo, crop_face, detect_faces, to_gray
from ferlab.labels import EMOTIONS

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".avif",
                  ".heic", ".heif")  # named: Pillow cannot read HEIC, and its photos get one line saying so
MODES = ("auto", "detect", "crop")
AUTO_CROP_MIN = 24     # pixels: smaller images are not taken as faces (the detector's smallest face) ...
AUTO_CROP_SIDE = 256   # pixels: in auto mode, images up to this size may be face crops ...
AUTO_CROP_FILL = 0.25  # ... when no face, or one covering this share of the image, is detected


@dataclass(frozen=True)
class FaceResult:
    box: Box
    probabilities: tuple[float, ...]  # in EMOTIONS order
    crop: np.ndarray                  # (48, 48) uint8, what the model saw
    cam: np.ndarray | None = None     # (48, 48) the overlay (Grad-CAM or occlusion) in [0, 1] for the predicted class
    found_by: str = "detector"        # "detector", or "whole image" (a face crop: see the module's docstring)

    @property
    def label(self) -> str:
        return EMOTIONS[int(np.argmax(self.probabilities))]

    @property
    def seen(self) -> Box:
        """The region of the photo the model saw (``crop`` resized): the box widened by CROP_MARGIN,
        or the box itself for a face taken whole; ``cam`` belongs over this region."""
        return self.box.widened(crop_margin(self.found_by))

    @property
    def confidence(self) -> float:
        return float(max(self.probabilities))

    def to_dict(self) -> dict:
        return {"box": self.box.to_list(), "score": self.box.score, "label": self.label, "confidence": round(self.confidence, 4),
                "probabilities": {name: round(p, 4) for name, p in zip(EMOTIONS, self.probabilities)},
                "found_by": self.found_by}


def nearly_square(width: int, height: int) -> bool:
    """Whether an image has a face crop's shape (a detector's box, widened, is about square)."""
    return 0.75 <= width / height <= 4 / 3


def looks_like_a_crop(gray: np.ndarray) -> bool:
    height, width = gray.shape
    return AUTO_CROP_MIN <= min(height, width) and max(height, width) <= AUTO_CROP_SIDE and nearly_square(width, height)


def find_faces(gray: np.ndarray, mode: str = "auto", detection: Detection = Detection()) -> tuple[list[Box], str]:
    """The boxes to classify in a (H, W) photo and how they were found (see the module's docstring)."""
    if mode not in MODES:
        raise FerlabError(f"unknown mode {mode!r}; available: {', '.join(MODES)}")
    whole = [Box(0, 0, gray.shape[1], gray.shape[0])]
    if mode == "crop":
        return whole, "whole image"
    boxes = detect_faces(gray, detection.min_face, detection.detector)
    fills = len(boxes) == 1 and boxes[0].w * boxes[0].h >= AUTO_CROP_FILL * gray.shape[0] * gray.shape[1]
    if mode == "auto" and looks_like_a_crop(gray) and (not boxes or fills):
        return whole, "whole image"
    return boxes, "detector"


def crop_margin(found_by: str) -> float:
    """A detector's box is widened by CROP_MARGIN before cropping (FER2013's faces show some
    hair and chin); a face crop taken whole is not."""
    return 0.0 if found_by == "whole image" else CROP_MARGIN


def analyze(loaded: LoadedModel, rgb: np.ndarray, explain: bool = False, tta: str = "none",
            mode: str = "auto", layer: str | None = None, detection: Detection = Detection()) -> list[FaceResult]:
    """Every face of an (H, W, 3) uint8 photo, largest first; ``tta`` is a test-time augmentation
    policy (``tta.TTA_POLICIES``) for the probabilities; ``mode`` as in the module's docstring;
    ``layer`` Grad-CAM's conv layer; ``detection`` the detector and the smallest face."""
    gray = to_gray(rgb)
    boxes, found_by = find_faces(gray, mode, detection)
    return classify_boxes(loaded, gray, boxes, found_by, explain=explain, tta=tta, layer=layer)


def classify_boxes(loaded: LoadedModel, gray: np.ndarray, boxes: list[Box], found_by: str = "detector", *,
                   explain: bool = False, tta: str = "none", layer: str | None = None) -> list[FaceResult]:
    """The faces in ``boxes`` of a (H, W) uint8 image, classified in one batch (and with
    ``explain``, the model's ``overlay_method`` for the predicted class: Grad-CAM at ``layer``, or
    occlusion)."""
    options = loaded.overlay_options(layer) if explain else {}  # a layer occlusion cannot take: with a face or without
    if not boxes:
        return []
    crops = np.stack([crop_face(gray, box, crop_margin(found_by)) for box in boxes])
    probabilities = loaded.probabilities(torch.from_numpy(crops), tta=tta)
    cams = overlay_maps(loaded, crops, probabilities.argmax(1), options) if explain else [None] * len(boxes)
    return [FaceResult(box, tuple(float(p) for p in probs), crop, cam, found_by)
            for box, probs, crop, cam in zip(boxes, probabilities.tolist(), crops, cams)]


def check_map_request(loaded: LoadedModel, explain: bool, layer: str | None) -> None:
    """Before the first photo or frame, one FerlabError for a map that cannot be drawn as asked: a
    ``layer`` the model lacks or its ``overlay_method`` cannot take, or a layer without ``explain``
    (it picks the conv layer of a map nobody asked for, and was passed over without a word)."""
    from ferlab.explain.common import check_layer

    if layer is not None and not explain:
        raise FerlabError(f"--layer {layer}: picks the conv layer of the map that --explain draws (explain=True in "
                          "Python); ask for the map, or leave the layer out")
    if explain:
        loaded.overlay_options(layer)
    check_layer(loaded.model, layer)


def overlay_maps(loaded: LoadedModel, crops: np.ndarray, targets: torch.Tensor, options: dict) -> list[np.ndarray]:
    """(N, 48, 48) uint8 crops -> the model's ``overlay_method`` map of each for its target class,
    in [0, 1]: the positive part, where the model found evidence for the class. ``options``:
    ``LoadedModel.overlay_options``."""
    maps = normalize(relu(loaded.explain(loaded.overlay_method, torch.from_numpy(crops), targets, **options)))
    return [m[0].numpy() for m in maps]


def heat_image(cam: np.ndarray) -> np.ndarray:
    """(48, 48) map in [0, 1] -> (48, 48, 3) uint8 colours, as photos and the page lay them over faces."""
    return (heat_rgb(cam) * 255).astype(np.uint8)


def annotate(rgb: np.ndarray, faces: list[FaceResult], tags: list[str] | None = None) -> Image.Image:
    """The photo with a box, label and confidence per face (after its tag, e.g. a video's face
    id, where given); where an overlay map was computed, it is blended into the region the model
    saw (``FaceResult.seen``)."""
    image = Image.fromarray(rgb).convert("RGB")
    for face in faces:
        if face.cam is None:
            continue
        seen = face.seen
        left, top = max(0, seen.x), max(0, seen.y)
        right, bottom = min(image.width, seen.x + seen.w), min(image.height, seen.y + seen.h)
        heat = Image.fromarray(heat_image(face.cam)).resize((seen.w, seen.h), Image.Resampling.BILINEAR)
        heat = heat.crop((left - seen.x, top - seen.y, right - seen.x, bottom - seen.y))
        region = image.crop((left, top, right, bottom))
        image.paste(Image.blend(region, heat, OVERLAY_ALPHA), (left, top))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, image.width // 45))
    line = max(2, image.width // 300)
    for face, tag in zip(faces, tags or [""] * len(faces)):
        b = face.box
        draw.rectangle([b.x, b.y, b.x + b.w, b.y + b.h], outline=(255, 210, 0), width=line)
        text = f"{tag + ' ' if tag else ''}{face.label} {face.confidence:.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        band = bottom - top + 2 * line
        y = b.y - band if b.y - band >= 0 else b.y + b.h  # above the box, or below it at the top edge
        draw.rectangle([b.x, y, b.x + right - left + 2 * line, y + band], fill=(255, 210, 0))
        draw.text((b.x + line - left, y + line - top), text, fill=(0, 0, 0), font=font)
    return image


def photo_note(photo: Photo, faces: list[FaceResult], detection: Detection) -> str | None:
    """What a reader of a photo's results should know: ``Photo.note``, and where no face was found
    because ``detection``'s smallest face is over the photo's size, that."""
    notes = [photo.note, None if faces else detection.rules_out_faces(photo.rgb.shape)]
    return "; ".join(note for note in notes if note) or None


def photo_record(name: str, rgb: np.ndarray, faces: list[FaceResult], note: str | None = None) -> dict:
    """A photo's JSON record; ``note``: what its reader should know (``Photo.note``), or None."""
    return {"image": name, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "note": note,
            "faces": [f.to_dict() for f in faces]}


def demo_photos() -> list[Path]:
    """Real photos that ship with installed packages: scikit-image's astronaut (Eileen Collins)
    and matplotlib's Grace Hopper."""
    import matplotlib.cbook
    import skimage.data

    return [Path(skimage.data.__file__).parent / "astronaut.png",
            Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))]
