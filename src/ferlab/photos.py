"""From a photo to explained emotions: detect every face, classify its 48x48 crop, and optionally
explain it with Grad-CAM (occlusion where Grad-CAM does not apply). Shared by ``ferlab photo`` and
``ferlab serve``; thread-safe on one model (no hooks; the model is in eval mode and only ever set to
eval mode again).

A face crop someone already has (a 48x48 FER2013 face, a tight crop from a film) holds too little
around the face for the detector. ``mode`` says what to do: ``detect`` faces, take the whole image
as one ``crop``, or ``auto``: a small, nearly square image (AUTO_CROP_MIN to AUTO_CROP_SIDE pixels
a side, sides within 3:4) in which the detector finds nothing, or one face filling at least
AUTO_CROP_FILL of it, is a face crop and is taken whole (the detector's box inside a 48x48 FER2013
face would crop the crop); any other image gets the detector's faces. Each face says which way it
was found."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from ferlab.checkpoint import LoadedModel
from ferlab.errors import FerlabError
from ferlab.explain.postprocess import OVERLAY_ALPHA, heat_rgb, normalize, relu
from ferlab.faces import CROP_MARGIN, Box, Detection, crop_face, detect_faces, to_gray
from ferlab.labels import EMOTIONS
from ferlab.outputs import within_name_limit, written

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
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


def looks_like_a_crop(gray: np.ndarray) -> bool:
    height, width = gray.shape
    return AUTO_CROP_MIN <= min(height, width) and max(height, width) <= AUTO_CROP_SIDE and 0.75 <= width / height <= 4 / 3


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


def photo_record(name: str, rgb: np.ndarray, faces: list[FaceResult], note: str | None = None) -> dict:
    """A photo's JSON record; ``note``: what its reader should know (``Photo.note``), or None."""
    return {"image": name, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "note": note,
            "faces": [f.to_dict() for f in faces]}


@dataclass(frozen=True)
class PhotoInputs:
    """What ``expand_inputs`` found: the photo files, folders that held none (``problems``: each an
    input that could not be read) and, per folder, the files of other kinds it passed over (``notes``)."""
    paths: list[Path]
    problems: list[str]
    notes: list[str]


def expand_inputs(inputs: list[str], outputs_in: Path | None = None) -> PhotoInputs:
    """Files as given; folders -> their photo files (by suffix, ``PHOTO_SUFFIXES``), sorted. A
    broken symlink, FIFO or device with a photo's name is kept, so that reading it fails with its
    name instead of vanishing; a folder's other files, and the PNGs an earlier ``ferlab photo``
    wrote into ``outputs_in`` (its output folder, read again), are counted and named in a note, and
    a folder with no photo at all is a problem, so that a folder of HEIC photos or the wrong folder
    is never 0 results without a word."""
    outputs_in = outputs_in.resolve() if outputs_in is not None else None
    paths, problems, notes = [], [], []
    for item in inputs:
        path = Path(item)
        if not path.is_dir():
            paths.append(path)
            continue
        files = sorted(p for p in path.rglob("*") if not p.is_dir())  # FIFOs and devices too: named when read
        copies = [p for p in files if p.suffix.lower() == ".png" and p.parent.resolve() == outputs_in and marked_as_ours(p)]
        ours = set(copies)
        photos = [p for p in files if p.suffix.lower() in PHOTO_SUFFIXES and p not in ours]
        others = [p for p in files if p.suffix.lower() not in PHOTO_SUFFIXES]
        passed_over = []
        if others:
            passed_over.append(f"{len(others)} file(s) that are not photos ({examples(others)})")
        if copies:
            passed_over.append(f"{len(copies)} earlier output(s) of ferlab photo ({examples(copies)})")
        if not photos:
            problems.append(f"{item}: no photos in this folder (looked for {' '.join(PHOTO_SUFFIXES)}"
                            + (f"; passed over {' and '.join(passed_over)})" if passed_over else ")"))
        elif passed_over:
            notes.append(f"{item}: passed over {' and '.join(passed_over)}")
        paths += photos
    return PhotoInputs(paths, problems, notes)


def examples(paths: list[Path]) -> str:
    return ", ".join(p.name for p in paths[:3]) + (", ..." if len(paths) > 3 else "")


SUMMARY_NAME = "results"  # results.json: the batch's summary, which no photo's output may take


def output_names(paths: list[Path]) -> list[str]:
    """One distinct, readable output name per photo: its stem where that is unique, else its file
    name, else more of its folders (``a/x/1.jpg`` and ``b/x/1.jpg`` -> ``a-x-1.jpg``, ``b-x-1.jpg``);
    never the summary's name, and a counter as the last resort (the same file given twice)."""
    def candidate(path: Path, level: int) -> str:
        if level == 0:
            return path.stem
        parts = path.resolve().parts[1:]  # without the root "/"
        return "-".join(parts[-level:])

    names = [candidate(p, 0) for p in paths]
    for level in range(1, 64):
        counts = {}
        for name in names:
            counts[name.lower()] = counts.get(name.lower(), 0) + 1  # case-insensitive file systems too
        clashing = [i for i, n in enumerate(names) if counts[n.lower()] > 1 or n.lower() == SUMMARY_NAME]
        if not clashing:
            return [within_name_limit(name) for name in names]
        widened = [candidate(paths[i], level) for i in clashing]
        if all(names[i] == w for i, w in zip(clashing, widened)):
            break  # no more folders to tell them apart
        for i, name in zip(clashing, widened):
            names[i] = name
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name.lower()] = seen.get(name.lower(), 0) + 1
        unique.append(name if seen[name.lower()] == 1 and name.lower() != SUMMARY_NAME else f"{name}-{seen[name.lower()]}")
    return [within_name_limit(name) for name in unique]



WRITTEN_BY = "ferlab photo"  # the Software text of every PNG it writes: how a rerun knows the file is its own
CROP_NAME = re.compile(r"(?P<name>.+)-face\d+\.png")  # a face's crop: NAME-face1.png, NAME-face2.png, ...


def output_paths(out: Path, names: list[str], crops: bool = False) -> list[Path]:
    """Every file ``process_photos`` writes for photos of ``names`` that can be named before their
    faces are found: the summary, each photo's pair, and with ``crops`` the crops already there
    (each replaced, or removed as left over)."""
    planned = [out / f"{SUMMARY_NAME}.json", *(out / f"{name}{end}" for name in names for end in (".json", "-annotated.png"))]
    return planned + (sum(crops_in(out, names).values(), []) if crops else [])


def crops_in(out: Path, names: list[str]) -> dict[str, list[Path]]:
    """The face crops already in ``out`` (``NAME-faceK.png``, from any run) of each of ``names`` that has some."""
    found: dict[str, list[Path]] = {}
    wanted = set(names)
    for file in sorted(os.listdir(out)) if out.is_dir() else []:
        if (match := CROP_NAME.fullmatch(file)) and match["name"] in wanted:
            found.setdefault(match["name"], []).append(out / file)
    return found


def check_replaceable(out: Path, paths: list[Path], names: list[str], crops: bool = False) -> None:
    """Before any work: a FerlabError naming the first output that would replace a file this
    command did not write there: an input photo, or a file of an output's name that is none of
    ours (a LabelMe annotation ``x.json`` beside ``x.png``, another tool's ``results.json``)."""
    inputs = {path.resolve() for path in paths}
    listed = listed_outputs(out / f"{SUMMARY_NAME}.json")
    for target in output_paths(out, names, crops):
        if target.resolve() in inputs:
            raise FerlabError(f"{target}: is one of the photos to read and would be replaced by an output; "
                              "choose another output folder (-o)")
        if target.exists() and target.name not in listed and not written_here(target):
            raise FerlabError(f"{target}: exists and is not an output of ferlab photo, which would replace it; "
                              "choose another output folder (-o) or move the file")


def listed_outputs(summary: Path) -> set[str]:
    """The file names an earlier run's summary lists (itself included), or none where it is not one."""
    record = read_small_json(summary)
    if not (isinstance(record, dict) and isinstance(record.get("photos"), list) and "model" in record):
        return set()
    names = {name for photo in record["photos"] if isinstance(photo, dict)
             for name in photo.get("outputs", []) if isinstance(name, str)}
    return names | {summary.name}


def written_here(path: Path) -> bool:
    """Whether a file is one ``ferlab photo`` writes: a photo's JSON record, or one of its PNGs."""
    if path.suffix == ".json":
        record = read_small_json(path)
        return isinstance(record, dict) and {"image", "faces", "outputs"} <= set(record)
    return marked_as_ours(path)


def marked_as_ours(path: Path) -> bool:
    """Whether a file is a PNG ``ferlab photo`` wrote, an annotated copy or a face's crop (marked
    as ours; read up to its first pixels only)."""
    try:
        if not path.is_file():  # opening a FIFO would wait for a writer
            return False
        with Image.open(path) as image:
            return image.format == "PNG" and image.info.get("Software") == WRITTEN_BY
    except Exception:  # noqa: BLE001 - not an image, unreadable: not ours
        return False


def save_marked(image: Image.Image, path: Path) -> None:
    """``image`` as a PNG at ``path``, marked as written by ``ferlab photo`` (see ``marked_as_ours``)."""
    mark = PngImagePlugin.PngInfo()
    mark.add_text("Software", WRITTEN_BY)
    with written(path) as temporary:
        image.save(temporary, format="PNG", pnginfo=mark)


def write_photo_outputs(out: Path, name: str, photo, faces: list[FaceResult], source: str, crops: bool,
                        earlier_crops: list[Path] = ()) -> dict:
    """One photo's outputs in ``out``: with ``crops`` each face's 48x48 crop as the model saw it
    (``NAME-faceK.png``, named in the face's ``crop``; ``earlier_crops`` of faces no longer found
    are removed), the annotated copy, then its JSON record, which is returned."""
    from ferlab.runs import write_json

    record = photo_record(source, photo.rgb, faces, photo.note)
    crop_names = [f"{name}-face{k}.png" for k in range(1, len(faces) + 1)] if crops else []
    for face, entry, crop_name in zip(faces, record["faces"], crop_names):
        save_marked(Image.fromarray(face.crop), out / crop_name)
        entry["crop"] = crop_name
    for stale in earlier_crops:  # ours: checked before any work
        if stale.name not in crop_names:
            stale.unlink(missing_ok=True)
    save_marked(annotate(photo.rgb, faces), out / f"{name}-annotated.png")
    record["outputs"] = [f"{name}.json", f"{name}-annotated.png", *crop_names]
    write_json(out / f"{name}.json", record)
    return record


def read_small_json(path: Path, limit: int = 2**24):
    """A JSON file's value, or None where it is missing, larger than ``limit`` bytes or not JSON."""
    try:
        if not path.is_file() or path.stat().st_size > limit:
            return None
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def demo_photos() -> list[Path]:
    """Real photos that ship with installed packages: scikit-image's astronaut (Eileen Collins)
    and matplotlib's Grace Hopper."""
    import matplotlib.cbook
    import skimage.data

    return [Path(skimage.data.__file__).parent / "astronaut.png",
            Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))]


def describe_faces(path, faces: list[FaceResult], note: str | None = None) -> str:
    """One line per photo for the command line: its faces' labels and confidences, and its note."""
    summary = ", ".join(f"{f.label} {f.confidence:.2f}" for f in faces) or "no face found"
    if faces and faces[0].found_by == "whole image":
        summary += " (the whole image as one face crop)"
    return f"{path}: {len(faces)} face{'s' if len(faces) != 1 else ''}: {summary}" + (f" ({note})" if note else "")


def process_photos(loaded: LoadedModel, paths: list[Path], out: Path, *, model_name: str, explain: bool = False,
                   tta: str = "none", mode: str = "auto", layer: str | None = None, detection: Detection = Detection(),
                   log=print, warn=print, unread: list[str] = (), progress: bool = False, crops: bool = False) -> dict:
    """``ferlab photo``: each photo's JSON record and annotated copy in ``out`` (names unique per
    input, see ``output_names``), with ``crops`` its faces' crops (``write_photo_outputs``), then
    the summary ``results.json``, which is returned. A photo
    that cannot be read is reported through ``warn`` and counted, as are the ``unread`` inputs
    found before (``PhotoInputs.problems``); the rest still run. ``progress``: a bar with the
    rate and time left on stderr when it is a terminal, the ``log`` and ``warn`` lines above it."""
    from tqdm.auto import tqdm

    from ferlab.faces import PhotoError, open_photo
    from ferlab.runs import write_json

    paths = list(dict.fromkeys(paths))  # each file once
    names = output_names(paths)
    check_replaceable(out, paths, names, crops)
    earlier_crops = crops_in(out, names) if crops else {}
    for problem in unread:
        warn(problem)
    records, problems = [], list(unread)
    # None: only on a terminal; piped or logged, stderr keeps one line per unreadable photo
    with tqdm(total=len(paths), unit="photo", disable=None if progress and len(paths) > 1 else True) as bar:
        for path, name in zip(paths, names):
            try:
                photo = open_photo(path)
            except PhotoError as error:
                say, line = warn, str(error)
                problems.append(line)
            else:
                faces = analyze(loaded, photo.rgb, explain=explain, tta=tta, mode=mode, layer=layer, detection=detection)
                records.append(write_photo_outputs(out, name, photo, faces, str(path), crops, earlier_crops.get(name, [])))
                say, line = log, describe_faces(path, faces, photo.note)
            with bar.external_write_mode():  # the line goes above the bar, not through it
                say(line)
            bar.update()
    if problems and not records:  # a typo must not replace the last run's summary with an empty one
        raise FerlabError(f"{out / SUMMARY_NAME}.json: not written: no input could be read")
    summary = {"model": model_name, "explained_by": loaded.overlay_method if explain else None, "photos": records,
               "failed": len(problems), "problems": problems}  # each input not read, and why
    write_json(out / f"{SUMMARY_NAME}.json", summary)
    return summary
