"""Face detectors compared on real photos: recall, false faces and time per photo.

    python benchmarks/detectors.py [--scenes 40] [--data ../shared/data/fer2013/fer2013-images.tar.xz]

The photos:
- the two real photos that ship with installed packages (scikit-image's astronaut, matplotlib's
  Grace Hopper), as they are and enlarged to 4000 pixels a side, where the Haar cascade used to
  find faces on a helmet and a suit;
- scenes made by pasting real faces into real backgrounds (scikit-image's sample photos without
  faces, at 640x480 and 1280x720): PrivateTest faces of FER2013 (48x48, enlarged to 64-200
  pixels) and the two photos' faces with the photo around them.

Every detector runs through ``ferlab.faces.detect_faces`` (the same scaling and minimum face as
the commands). A detection finds a face when their boxes overlap by at least 0.3 (IoU); any other
detection is a false face. Scores are swept after one run at each detector's loosest setting.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

import torch

from ferlab.checkpoint import load_model
from ferlab.faces import DETECTORS, Box, crop_face, detect_faces, read_photo, to_gray
from ferlab.photos import demo_photos
from ferlab.video import overlap

BACKGROUNDS = ("coffee.png", "chelsea.png", "rocket.jpg", "brick.png", "grass.png", "gravel.png", "hubble_deep_field.jpg",
               "motorcycle_left.png")  # files inside scikit-image's wheel: read from disk, nothing fetched
# The real photos' faces (x, y, w, h), checked by eye; both detectors agree on them within a few pixels.
PHOTO_FACES = {"astronaut.png": Box(177, 67, 93, 93), "grace_hopper.jpg": Box(149, 100, 231, 231)}
THRESHOLDS = {"hog": (0.1, 0.2, 0.4), "haar": (5, 8, 12, 16)}  # hog's from its default up


def real_photos() -> list[tuple[str, np.ndarray, list[Box], list[int | None]]]:
    photos = []
    for path in demo_photos():
        gray, box = to_gray(read_photo(path)), PHOTO_FACES[path.name]
        photos.append((path.name, gray, [box], [None]))
        scale = 4000 / max(gray.shape)
        big = np.asarray(Image.fromarray(gray).resize((round(gray.shape[1] * scale), round(gray.shape[0] * scale)),
                                                      Image.Resampling.BICUBIC))
        photos.append((f"{path.name} at 4000 px", big, [Box(*(round(v * scale) for v in (box.x, box.y, box.w, box.h)))],
                       [None]))
    return photos


def face_sources(data: str | None) -> list[tuple[np.ndarray, Box, int | None]]:
    """Gray images to paste, each with its face's box inside it and its FER2013 label (None for the
    photos' faces, pasted with a margin of half the face around them; a PrivateTest face is its
    whole crop)."""
    sources = []
    for path in demo_photos():
        gray, b = to_gray(read_photo(path)), PHOTO_FACES[path.name]
        m = b.w // 2
        top, left = max(0, b.y - m), max(0, b.x - m)
        crop = gray[top:b.y + b.h + m, left:b.x + b.w + m]
        sources.append((crop, Box(b.x - left, b.y - top, b.w, b.h), None))
    if data:
        from ferlab.data import load_faces

        test = load_faces(Path(data)).split("test")
        for i in range(0, len(test), max(1, len(test) // 200))[:200]:
            sources.append((test.images[i].numpy(), Box(0, 0, 48, 48), int(test.labels[i])))
    return sources


def make_scenes(count: int, sources, seed: int = 0) -> list[tuple[str, np.ndarray, list[Box], list[int | None]]]:
    generator = np.random.default_rng(seed)
    scenes = []
    for index in range(count):
        name = BACKGROUNDS[index % len(BACKGROUNDS)]
        width, height = (640, 480) if index % 2 == 0 else (1280, 720)
        background = Image.open(Path(skimage.data.__file__).parent / name).convert("L")
        scene = np.asarray(background.resize((width, height), Image.Resampling.BILINEAR)).copy()
        boxes: list[Box] = []
        labels: list[int | None] = []
        for _ in range(3):
            image, face, label = sources[int(generator.integers(len(sources)))]
            side = int(generator.integers(64, 201))  # the face's side once pasted
            scale = side / face.w
            pasted = np.asarray(Image.fromarray(image).resize((max(1, round(image.shape[1] * scale)),
                                                               max(1, round(image.shape[0] * scale))),
                                                              Image.Resampling.BILINEAR))
            for _attempt in range(20):
                x = int(generator.integers(0, width - pasted.shape[1] + 1))
                y = int(generator.integers(0, height - pasted.shape[0] + 1))
                box = Box(x + round(face.x * scale), y + round(face.y * scale), side, side)
                region = Box(x, y, pasted.shape[1], pasted.shape[0])
                if all(overlap(region, Box(b.x - b.w // 2, b.y - b.h // 2, 2 * b.w, 2 * b.h)) == 0 for b in boxes):
                    scene[y:y + pasted.shape[0], x:x + pasted.shape[1]] = pasted
                    boxes.append(box)
                    labels.append(label)
                    break
        scenes.append((f"scene {index} ({name}, {width}x{height})", scene, boxes, labels))
    return scenes


def score(found: list[Box], truth: list[Box], threshold: float) -> tuple[int, int]:
    """(faces found, false faces) among detections scoring at least ``threshold``."""
    kept = [b for b in found if b.score >= threshold]
    matched = {i for i, t in enumerate(truth) if any(overlap(t, b) >= 0.3 for b in kept)}
    false = sum(1 for b in kept if not any(overlap(t, b) >= 0.3 for t in truth))
    return len(matched), false


def accuracy_on_found(loaded, runs) -> tuple[float, int]:
    """The model's accuracy on the labelled (FER2013) faces a detector found, cropped as the
    commands crop them, and how many there were."""
    crops, labels = [], []
    for (_, gray, truth, truth_labels), (_, found, _) in zip(*runs):
        for box, label in zip(truth, truth_labels):
            match = [b for b in found if overlap(box, b) >= 0.3]
            if label is not None and match:
                crops.append(crop_face(gray, match[0]))
                labels.append(label)
    if not crops:
        return float("nan"), 0
    predicted = loaded.probabilities(torch.from_numpy(np.stack(crops))).argmax(1)
    return float((predicted == torch.tensor(labels)).float().mean()), len(crops)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--data", default=os.environ.get("FERLAB_DATA", "../shared/data/fer2013/fer2013-images.tar.xz"))
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    loaded = load_model(args.model, device="cpu")
    photos = real_photos() + make_scenes(args.scenes, face_sources(args.data if Path(args.data).exists() else None))
    faces = sum(len(t) for _, _, t, _ in photos)
    print(f"# {len(photos)} photos, {faces} faces; {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print("| detector | score at least | faces found (recall) | false faces | false faces in the 4000 px photos | "
          "ms per photo | accuracy on the FER2013 faces found |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for detector in DETECTORS:
        runs, seconds = [], 0.0
        for name, gray, truth, _ in photos:
            started = time.perf_counter()
            found = detect_faces(gray, detector=detector)
            seconds += time.perf_counter() - started
            runs.append((name, found, truth))
        accuracy, count = accuracy_on_found(loaded, (photos, runs))
        for threshold in THRESHOLDS[detector]:
            totals = [score(found, truth, threshold) for _, found, truth in runs]
            large = sum(score(found, truth, threshold)[1] for name, found, truth in runs if "4000" in name)
            hits, false = sum(t[0] for t in totals), sum(t[1] for t in totals)
            shown = f"{accuracy:.1%} of {count}" if threshold == THRESHOLDS[detector][0] else ""
            print(f"| {detector} | {threshold} | {hits}/{faces} ({hits / faces:.0%}) | {false} | {large} | "
                  f"{1000 * seconds / len(photos):.0f} | {shown} |")
    labelled = [(gray, box, label) for _, gray, truth, labels in photos for box, label in zip(truth, labels)
                if label is not None]
    print(f"\nthe model on the same {len(labelled)} pasted FER2013 faces' own 48x48 crops: accuracy "
          f"{direct_accuracy(loaded, photos):.1%}")


def direct_accuracy(loaded, photos) -> float:
    """Accuracy on the pasted FER2013 faces as the data set has them (no detector, no resampling)."""
    crops, labels = [], []
    for _, gray, truth, truth_labels in photos:
        for box, label in zip(truth, truth_labels):
            if label is not None:
                region = gray[box.y:box.y + box.h, box.x:box.x + box.w]
                crops.append(np.asarray(Image.fromarray(region).resize((48, 48), Image.Resampling.BILINEAR)))
                labels.append(label)
    predicted = loaded.probabilities(torch.from_numpy(np.stack(crops))).argmax(1)
    return float((predicted == torch.tensor(labels)).float().mean())


if __name__ == "__main__":
    main()
