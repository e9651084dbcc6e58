"""Photos: reading them safely, finding faces, cropping, and ``ferlab photo`` on real pictures."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ferlab.checkpoint import load_model
from ferlab.cli import main
from ferlab.faces import Box, PhotoError, crop_face, detect_faces, read_photo, to_gray
from ferlab.errors import FerlabError
from ferlab.labels import EMOTIONS
from ferlab.photos import FaceResult, analyze, annotate, demo_photos

ASTRONAUT, GRACE_HOPPER = demo_photos()


@pytest.fixture(scope="module")
def default_model():
    return load_model("default")


def test_detection_finds_the_face_in_the_packaged_photos():
    # astronaut.png: Eileen Collins' face is around x 180-270, y 60-160 of the 512x512 photo.
    boxes = detect_faces(to_gray(read_photo(ASTRONAUT)))
    assert len(boxes) == 1
    box = boxes[0]
    assert 180 <= box.x + box.w / 2 <= 270 and 60 <= box.y + box.h / 2 <= 160 and 60 <= box.w <= 160
    hopper = detect_faces(to_gray(read_photo(GRACE_HOPPER)))
    assert len(hopper) == 1 and 150 <= hopper[0].x + hopper[0].w / 2 <= 380


def test_a_photo_without_a_face_gives_an_empty_result(default_model):
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    assert analyze(default_model, np.stack([ramp] * 3, axis=-1)) == []


def test_photo_tta_averages_the_logits_of_the_crop_and_its_mirror(default_model, tmp_path):
    rgb = read_photo(ASTRONAUT)
    (plain,), (flipped,) = analyze(default_model, rgb), analyze(default_model, rgb, tta="flip")
    crop = torch.from_numpy(plain.crop[None])  # the model's one inference path, on the crop and its mirror
    logits = (default_model.logits(crop) + default_model.logits(crop.flip(-1))) / 2
    calibrated = (logits / default_model.temperature).softmax(1)
    assert flipped.probabilities == pytest.approx(calibrated[0].tolist(), abs=1e-5)
    assert flipped.probabilities != plain.probabilities
    assert main(["photo", str(ASTRONAUT), "--tta", "flip-zoom", "-o", str(tmp_path)]) == 0
    assert len(json.loads((tmp_path / "astronaut.json").read_text())["faces"]) == 1


def test_crop_widens_the_box_and_repeats_edges():
    gray = np.zeros((100, 100), dtype=np.uint8)
    gray[40:60, 40:60] = 200
    centre = crop_face(gray, Box(40, 40, 20, 20), margin=0.0)
    assert centre.shape == (48, 48) and (centre == 200).all()
    corner = crop_face(np.full((50, 50), 7, dtype=np.uint8), Box(0, 0, 30, 30), margin=0.5)
    assert corner.shape == (48, 48) and (corner == 7).all()


def test_the_overlay_lies_over_the_region_the_model_saw():
    assert Box(40, 40, 20, 20, 0.9).widened(0.1) == Box(38, 38, 24, 24, 0.9)
    gray = np.full((96, 96), 128, dtype=np.uint8)
    cam = np.zeros((48, 48))
    cam[:, :12] = 1.0  # the left quarter of what the model saw: pixels 0-23 of a face taken whole
    for found_by, seen, edge in (("whole image", Box(0, 0, 96, 96), 24), ("detector", Box(-10, -10, 116, 116), 19)):
        face = FaceResult(Box(0, 0, 96, 96), (1 / 7,) * 7, gray[:48, :48], cam, found_by)
        assert face.seen == seen
        annotated = np.asarray(annotate(np.stack([gray] * 3, axis=-1), [face]), dtype=int)
        red, blue = annotated[60, edge - 4], annotated[60, edge + 4]  # jet: 1 is dark red, 0 dark blue
        assert red[0] > red[2] + 40 and blue[2] > blue[0] + 40, found_by


def test_read_photo_applies_exif_orientation(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert read_photo(path).shape == (40, 20, 3)


def bad_files(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(GRACE_HOPPER.read_bytes()[:20000])
    huge = tmp_path / "huge.png"
    Image.new("L", (8000, 6000)).save(huge)  # 48 MP of zeros compresses to a small file
    holed = tmp_path / "holed.tif"
    values = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    values[10, 10] = np.nan
    Image.fromarray(values, mode="F").save(holed)
    return {text: "not an image", truncated: "truncated or corrupt image", huge: "image is 8000x6000 (48 MP), above the limit of 40 MP",
            holed: "float image with 1 NaN or infinite pixel of 4096"}


def test_each_bad_file_is_named_and_the_batch_goes_on(tmp_path, capsys):
    cases = bad_files(tmp_path)
    for path, message in cases.items():
        with pytest.raises(PhotoError, match=rf"^{re.escape(str(path))}: {re.escape(message)}"):
            read_photo(path)
    out = tmp_path / "out"
    code = main(["photo", str(ASTRONAUT), *map(str, cases), "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    errors = captured.err.strip().splitlines()
    assert len(errors) == len(cases) and all(line.startswith("ferlab: error: ") for line in errors)
    for path, message in cases.items():
        assert any(str(path) in line and message in line for line in errors)
    results = json.loads((out / "results.json").read_text())
    assert [p["image"] for p in results["photos"]] == [str(ASTRONAUT)] and results["failed"] == len(cases)
    assert results["problems"] == [line.removeprefix("ferlab: error: ") for line in errors]  # named there too


def test_photo_json_schema_and_annotated_copies(tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 200), (90, 120, 150)).save(blank)
    out = tmp_path / "out"
    assert main(["photo", "--demo", str(blank), "--explain", "-o", str(out)]) == 0
    assert "blank.png: 0 faces: no face found" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    records = results["photos"]
    assert len(records) == 3 and results["explained_by"] == "gradcam"
    for record in records:
        assert set(record) == {"image", "width", "height", "note", "faces", "outputs"} and record["note"] is None
        for face in record["faces"]:
            assert set(face) == {"box", "score", "label", "confidence", "probabilities", "found_by"}
            assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
            assert face["label"] in EMOTIONS and list(face["probabilities"]) == list(EMOTIONS)
            assert sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-3)
            assert face["confidence"] == max(face["probabilities"].values())
    assert [len(r["faces"]) for r in records] == [1, 1, 0]
    for stem in ("astronaut", "grace_hopper", "blank"):
        assert Image.open(out / f"{stem}-annotated.png").size == (records[["astronaut", "grace_hopper", "blank"].index(stem)]["width"],
                                                                  records[["astronaut", "grace_hopper", "blank"].index(stem)]["height"])


# --- issue 11: outputs unique per input, thin and 16-bit photos ------------------------------------

def test_every_photo_gets_its_own_outputs(tmp_path, capsys):
    photo = ASTRONAUT.read_bytes()
    names = ["a/x/1.png", "b/x/1.png", "x/face.png", "x/face.jpg", "results.png", "Results.jpg"]
    paths = []
    for name in names:
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".jpg"):
            Image.open(ASTRONAUT).convert("RGB").save(path)
        else:
            path.write_bytes(photo)
        paths.append(path)
    out = tmp_path / "out"
    assert main(["photo", *map(str, paths), str(paths[0]), "-o", str(out)]) == 0  # the first one twice: read once
    summary = json.loads((out / "results.json").read_text())
    assert [p["image"] for p in summary["photos"]] == list(map(str, paths))
    outputs = [name for record in summary["photos"] for name in record["outputs"]]
    assert len(set(outputs)) == len(outputs) == 2 * len(paths) and "results.json" not in outputs
    for record in summary["photos"]:
        assert json.loads((out / record["outputs"][0]).read_text())["image"] == record["image"]


def test_thin_and_tiny_photos_do_not_stop_the_batch(tmp_path, capsys):
    strips = []
    for size in ((1, 5000), (5000, 1), (5, 5)):
        path = tmp_path / f"strip-{size[0]}x{size[1]}.png"
        Image.new("L", size, 128).save(path)
        strips.append(path)
    out = tmp_path / "out"
    assert main(["photo", *map(str, strips), str(ASTRONAUT), "-o", str(out)]) == 0
    records = json.loads((out / "results.json").read_text())["photos"]
    assert [len(r["faces"]) for r in records] == [0, 0, 0, 1]


def test_a_16_bit_photo_is_read_as_its_8_bit_copy(tmp_path):
    gray = np.asarray(Image.open(GRACE_HOPPER).convert("L"))
    wide = tmp_path / "hopper16.png"
    Image.fromarray(gray.astype(np.uint16) * 257).save(wide)
    assert np.array_equal(read_photo(wide)[..., 0], gray)


def test_faces_of_equal_size_come_in_one_order_whatever_the_detector_returns(monkeypatch):
    import ferlab.faces

    class Detector:
        def __init__(self, boxes):
            self.boxes = np.array(boxes)

        def detectMultiScale2(self, *args, **kwargs):
            return self.boxes, np.full(len(self.boxes), 9)

    boxes = [[200, 10, 60, 60], [10, 10, 60, 60], [10, 100, 60, 60], [300, 300, 80, 80]]
    orders = []
    for permutation in (boxes, boxes[::-1], boxes[1:] + boxes[:1]):
        monkeypatch.setattr(ferlab.faces._LOCAL, "classifier", Detector(permutation), raising=False)
        orders.append([b.to_list() for b in detect_faces(np.zeros((400, 400), dtype=np.uint8), detector="haar")])
    assert orders[0] == orders[1] == orders[2]
    assert orders[0] == [[300, 300, 80, 80], [10, 10, 60, 60], [200, 10, 60, 60], [10, 100, 60, 60]]  # largest, then top-left


def test_a_fifo_is_named_not_read_forever(tmp_path, capsys):
    import os

    pipe = tmp_path / "pipe.png"  # a PNG's name: in the output folder, not opened to see whether it is ours either
    os.mkfifo(pipe)  # reading it would block until someone writes
    with pytest.raises(PhotoError, match=rf"{re.escape(str(pipe))}: not a regular file"):
        read_photo(pipe)
    assert main(["photo", str(pipe), str(ASTRONAUT), "-o", str(tmp_path / "out")]) == 2
    assert json.loads((tmp_path / "out" / "results.json").read_text())["failed"] == 1
    # inside a folder it is named too, not passed over as something other than a file
    Image.open(ASTRONAUT).save(tmp_path / "astronaut.png")
    assert main(["photo", str(tmp_path), "-o", str(tmp_path)]) == 2
    assert f"ferlab: error: {pipe}: not a regular file" in capsys.readouterr().err
    assert json.loads((tmp_path / "results.json").read_text())["failed"] == 1


def test_detections_carry_scores_and_both_detectors_find_the_real_faces():
    from ferlab.faces import DETECTORS

    for path in demo_photos():
        gray = to_gray(read_photo(path))
        for detector in DETECTORS:
            boxes = detect_faces(gray, detector=detector)
            assert len(boxes) == 1, (path.name, detector, boxes)
            assert boxes[0].score is not None and boxes[0].score > 0


def test_the_minimum_face_removes_the_false_faces_of_a_large_photo():
    """The astronaut enlarged to 4000 pixels: with no minimum the Haar cascade also finds 'faces' on
    the suit (a new user's report); the default minimum (5% of the side) keeps only hers."""
    from ferlab.faces import MIN_FACE

    gray = to_gray(read_photo(demo_photos()[0]))
    big = np.asarray(Image.fromarray(gray).resize((4000, 4000), Image.Resampling.BICUBIC))
    unbounded = detect_faces(big, min_face=0, detector="haar")
    assert len(unbounded) == 3
    kept = detect_faces(big, min_face=MIN_FACE, detector="haar")
    assert [b.to_list() for b in kept] == [unbounded[0].to_list()] and kept[0].w > 700
    assert len(detect_faces(big, min_face=150, detector="haar")) == 2  # in pixels: the 113-pixel false face goes


def test_bad_detection_settings_are_one_line():
    from ferlab.faces import Detection

    with pytest.raises(FerlabError, match="unknown face detector 'mtcnn'; available: hog, haar"):
        Detection("mtcnn")
    with pytest.raises(FerlabError, match="--min-face -1"):
        Detection(min_face=-1)
    for bad in (float("nan"), float("inf"), "80", None):  # NaN passed every comparison, then round() raised
        with pytest.raises(FerlabError, match=f"--min-face {bad}: expected pixels"):
            Detection(min_face=bad)


def test_a_smallest_face_over_the_picture_is_said_to_rule_out_every_face():
    from ferlab.faces import Detection

    assert Detection(min_face=400).rules_out_faces((400, 640, 3)) is None  # a face may fill the shorter side
    assert Detection(min_face=401).rules_out_faces((400, 640, 3)) == "--min-face 401 px is over this 640x400 picture's shorter side"
    assert Detection(min_face=1e30).rules_out_faces((400, 640)) == "--min-face 1e+30 px is over this 640x400 picture's shorter side"
    assert Detection(min_face=0.99).rules_out_faces((30, 20)) is None  # a fraction of the picture never does


def test_a_folder_without_photos_is_named_and_other_files_are_counted(tmp_path, capsys):
    """A folder of HEIC photos (which Pillow cannot read: each is named) or a wrong path is not 0
    results without a word: a folder with no photo is an input that could not be read; a folder's
    other files are named in a note and the photos beside them still run."""
    heic, empty, mixed = tmp_path / "heic", tmp_path / "empty", tmp_path / "mixed"
    for folder in (heic, empty, mixed):
        folder.mkdir()
    (heic / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    Image.open(GRACE_HOPPER).save(mixed / "hopper.png")
    (mixed / "notes.txt").write_text("taken in 1984")
    out = tmp_path / "out"
    code = main(["photo", str(heic), str(empty), str(mixed), "-o", str(out)])
    captured = capsys.readouterr()
    suffixes = ".jpg .jpeg .png .bmp .gif .tif .tiff .webp .avif .heic .heif"
    assert code == 2 and captured.err.strip().splitlines() == [
        f"ferlab: note: {mixed}: passed over 1 file(s) that are not photos (notes.txt)",
        f"ferlab: error: {empty}: no photos in this folder (looked for {suffixes})",
        f"ferlab: error: {heic / 'IMG_0001.HEIC'}: a HEIC/HEIF photo (an iPhone's format), which Pillow cannot read; "
        "convert it to JPEG or PNG"]  # it was "not a photo" in a note
    assert "wrote 1 results" in captured.out and "2 input(s) could not be read" in captured.out
    results = json.loads((out / "results.json").read_text())
    assert [p["image"] for p in results["photos"]] == [str(mixed / "hopper.png")] and results["failed"] == 2


def test_a_batch_of_photos_shows_its_progress_on_a_terminal_only(tmp_path, capsys, monkeypatch):
    """On a terminal a bar counts the photos with their rate and the time left, the lines above it;
    piped (as captured here) or with --quiet, stderr holds nothing but the errors."""
    assert main(["photo", "--demo", "-o", str(tmp_path / "piped")]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["photo", "--demo", "-o", str(tmp_path / "terminal")]) == 0
    captured = capsys.readouterr()
    assert "2/2" in captured.err and "photo/s" in captured.err
    assert "astronaut.png: 1 face: happy" in captured.out and "2/2" not in captured.out
    assert main(["photo", "--demo", "--quiet", "-o", str(tmp_path / "quiet")]) == 0
    assert capsys.readouterr().err == ""


# --- 16-bit photos of 12-bit data -------------------------------------------------------------------

def test_12_bit_data_in_a_16_bit_photo_is_said_dark_unless_the_png_states_its_bits(tmp_path, capsys):
    """A lab camera's 12-bit values saved unscaled in a 16-bit PNG or TIFF came out nearly black:
    no face found, and nothing said. The photo's line and record now say why; a PNG whose sBIT
    chunk states 12 bits is read at its own range and its face found."""
    import ferlab
    from tests.hostile import with_significant_bits

    gray = np.asarray(Image.open(demo_photos()[1]).convert("L")).astype(np.uint16) * 16  # 0..4080
    unstated, tiff, stated = tmp_path / "unstated.png", tmp_path / "unstated.tiff", tmp_path / "stated.png"
    Image.fromarray(gray).save(unstated)
    Image.fromarray(gray).save(tiff)
    stated.write_bytes(with_significant_bits(unstated.read_bytes(), 12))
    assert main(["photo", str(unstated), str(tiff), str(stated), "-o", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    records = json.loads((tmp_path / "out" / "results.json").read_text())["photos"]
    dark = "its 16-bit values reach only 4080 of 65535, as 12-bit data saved unscaled would"
    for record, line in zip(records[:2], lines):
        assert record["faces"] == [] and record["note"].startswith(dark) and dark in line
    assert len(records[2]["faces"]) == 1 and records[2]["note"] is None
    with pytest.warns(UserWarning, match=f"^{unstated}: {dark}"):
        ferlab.load("default-fast").predict(unstated)


# --- an animated photo: its first frame, and a note saying so ---------------------------------------

def animated_photo(folder) -> tuple[object, object]:
    """(an animated GIF of the two demo photos, a lossless PNG of its first frame as decoded)."""
    first, second = (Image.open(path).convert("RGB").resize((400, 400)) for path in demo_photos()[::-1])
    gif, still = folder / "animated.gif", folder / "first-frame.png"
    first.save(gif, save_all=True, append_images=[second], duration=500, loop=0)
    Image.open(gif).convert("RGB").save(still)
    return gif, still


def test_an_animated_photo_is_read_at_its_first_frame_with_a_note(tmp_path, capsys):
    gif, still = animated_photo(tmp_path)
    assert main(["photo", str(gif), str(still), "-o", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    animated, first = json.loads((tmp_path / "out" / "results.json").read_text())["photos"]
    assert animated["faces"] == first["faces"] and len(first["faces"]) == 1  # the first frame, Grace Hopper
    assert animated["note"].startswith("first frame only") and first["note"] is None
    assert lines[0].endswith("(first frame only: an animated or multi-page image (ferlab video reads every frame))")
