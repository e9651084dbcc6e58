"""``ferlab video`` on videos made from real photos (issue 13, item 1): faces followed across
frames, probabilities smoothed, an annotated video, a per-frame CSV, a timeline and a summary."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image, features

from ferlab.cli import main
from ferlab.errors import FerlabError
from ferlab.faces import Box
from ferlab.labels import EMOTIONS
from ferlab.photos import demo_photos
from ferlab.video import Tracker, VideoOptions, overlap

FRAMES, FPS = 30, 25


def write_video(path, frames, fps=FPS):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    return path


def two_faces_scene(shift: int) -> np.ndarray:
    """640x480: the astronaut (smiling) and Grace Hopper side by side, the astronaut moved
    ``shift`` pixels to the right."""
    astronaut, hopper = (np.asarray(Image.open(p).convert("RGB")) for p in demo_photos())
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[80:400, shift:300 + shift] = np.asarray(Image.fromarray(astronaut).resize((320, 320)))[:, :300]
    frame[80:400, 320:640] = np.asarray(Image.fromarray(hopper).resize((320, 375)))[:320]
    return frame


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("video")
    return write_video(folder / "two.mp4", [two_faces_scene(i % 10) for i in range(FRAMES)])


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def faces_by_id(rows) -> dict[str, list[dict]]:
    faces: dict[str, list[dict]] = {}
    for row in rows:
        faces.setdefault(row["face"], []).append(row)
    return faces


def test_a_video_gets_every_output_and_each_face_keeps_its_id(video, tmp_path, capsys, monkeypatch):
    import cv2

    out = tmp_path / "out"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal: piped, no bar is drawn
    assert main(["video", str(video), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"{FRAMES}/{FRAMES}" in captured.err  # the progress bar (with its rate and ETA) ran to the end
    rows = read_rows(out / "two-frames.csv")
    assert list(rows[0]) == ["frame", "time_s", "face", "x", "y", "w", "h", "label", *EMOTIONS]
    faces = faces_by_id(rows)
    steady = {face: found for face, found in faces.items() if len(found) == FRAMES}
    assert len(steady) == 2, {face: len(found) for face, found in faces.items()}  # both followed in every frame
    for found in steady.values():
        assert [int(r["frame"]) for r in found] == list(range(FRAMES))
        assert float(found[3]["time_s"]) == pytest.approx(3 / FPS)
        assert all(abs(sum(float(r[e]) for e in EMOTIONS) - 1) < 1e-3 for r in found)
    summary = json.loads((out / "two-summary.json").read_text())
    assert summary["frames"] == FRAMES and summary["fps"] == FPS
    top = {f["face"]: f["top_emotion"] for f in summary["faces"] if f["frames"] == FRAMES}
    left, right = sorted(steady, key=lambda face: int(steady[face][0]["x"]))
    assert top[int(left)] == "happy" and top[int(right)] != "happy"  # the astronaut smiles; Grace Hopper does not
    assert "mostly happy" in captured.out
    capture = cv2.VideoCapture(str(out / "two-annotated.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    ok, frame = capture.read()
    assert ok and frame.shape == (480, 640, 3)
    assert (out / "two-timeline.png").stat().st_size > 10_000


def test_the_python_api_gives_the_commands_summary(video, tmp_path):
    import ferlab

    assert main(["video", str(video), "-o", str(tmp_path / "cli"), "--quiet", "--detect-every", "3"]) == 0
    summary = ferlab.load("default").video(video, tmp_path / "api", detect_every=3)
    assert summary == json.loads((tmp_path / "cli" / "two-summary.json").read_text())
    assert read_rows(tmp_path / "api" / "two-frames.csv") == read_rows(tmp_path / "cli" / "two-frames.csv")
    assert summary["frames"] == summary["frames_announced"] == FRAMES and len(summary["faces"]) >= 2


def test_a_smallest_face_over_the_frames_says_why_none_was_found(video, tmp_path, capsys):
    assert main(["video", str(video), "-o", str(tmp_path / "out"), "--quiet", "--min-face", "481"]) == 0
    why = "--min-face 481 px is over this 640x480 picture's shorter side"
    assert f"0 faces ({why})" in capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "two-summary.json").read_text())
    assert summary["faces"] == [] and summary["note"] == why


def test_explain_lays_each_faces_map_of_the_label_shown_over_it(video, tmp_path, capsys):
    import cv2

    from ferlab.checkpoint import load_model
    from ferlab.photos import overlay_maps
    from ferlab.video import Frame, frame_faces

    plain, explained = tmp_path / "plain", tmp_path / "explained"
    assert main(["video", str(video), "-o", str(plain), "--quiet"]) == 0
    assert main(["video", str(video), "-o", str(explained), "--quiet", "--explain"]) == 0
    assert read_rows(explained / "two-frames.csv") == read_rows(plain / "two-frames.csv")  # the answers are unchanged
    assert json.loads((explained / "two-summary.json").read_text())["explained_by"] == "gradcam"
    assert json.loads((plain / "two-summary.json").read_text())["explained_by"] is None
    frames = [cv2.VideoCapture(str(folder / "two-annotated.mp4")).read()[1].astype(int) for folder in (plain, explained)]
    box = [int(v) for v in (read_rows(plain / "two-frames.csv")[0][k] for k in "xywh")]
    inside = np.zeros(frames[0].shape[:2], bool)
    inside[box[1]:box[1] + box[3], box[0]:box[0] + box[2]] = True
    difference = np.abs(frames[0] - frames[1]).mean(axis=2)
    assert difference[inside].mean() > 10 > 2 > difference[~inside].mean()  # a heat map on the face, nothing elsewhere
    # Each map explains the smoothed label the video shows, not the frame's own: a face that was
    # "fear" so far is still shown (and explained) as fear in a frame that alone says otherwise.
    loaded, options = load_model("default"), VideoOptions(explain=True, smoothing=0.9)
    tracker = Tracker(options)
    frame_faces(loaded, Frame(0, 0.0, two_faces_scene(0)), tracker, options)
    for track in tracker.tracks:
        track.probabilities = np.eye(len(EMOTIONS))[EMOTIONS.index("fear")]
    faces = frame_faces(loaded, Frame(1, 1 / FPS, two_faces_scene(1)), tracker, options)
    own = loaded.probabilities(torch.from_numpy(np.stack([face.crop for _, face in faces]))).argmax(1)
    assert [face.label for _, face in faces] == ["fear", "fear"] and EMOTIONS.index("fear") not in own.tolist()
    for (_, face), its_own in zip(faces, own):
        expected = overlay_maps(loaded, face.crop[None], torch.tensor([EMOTIONS.index("fear")]), {})[0]
        np.testing.assert_allclose(face.cam, expected, atol=1e-4)
        assert np.abs(face.cam - overlay_maps(loaded, face.crop[None], its_own[None], {})[0]).max() > 0.05


def test_detecting_every_k_frames_carries_the_boxes(video, tmp_path):
    out = tmp_path / "every5"
    assert main(["video", str(video), "-o", str(out), "--detect-every", "5", "--quiet"]) == 0
    for found in faces_by_id(read_rows(out / "two-frames.csv")).values():
        for start in range(0, len(found), 5):  # within a group of 5 frames the box is the detected one
            group = found[start:start + 5]
            assert len({(r["x"], r["y"], r["w"], r["h"]) for r in group}) == 1


def test_smoothing_is_an_exponential_moving_average():
    tracker = Tracker(VideoOptions(smoothing=0.5))
    (track,) = tracker.match([Box(0, 0, 10, 10)])
    first, second = np.eye(7)[0], np.eye(7)[3]
    assert np.allclose(tracker.smooth(track, first, 0.0), first)  # a new face starts from its first frame
    assert np.allclose(tracker.smooth(track, second, 0.04), 0.5 * first + 0.5 * second)
    assert np.allclose(tracker.smooth(track, second, 0.08), 0.25 * first + 0.75 * second)
    unsmoothed = Tracker(VideoOptions(smoothing=0.0))
    (other,) = unsmoothed.match([Box(0, 0, 10, 10)])
    unsmoothed.smooth(other, first, 0.0)
    assert np.allclose(unsmoothed.smooth(other, second, 0.04), second)


def test_the_tracker_matches_by_overlap_and_ends_lost_faces():
    tracker = Tracker(VideoOptions(max_missed=1))
    a, b = tracker.match([Box(0, 0, 100, 100), Box(300, 0, 100, 100)])
    assert (a.id, b.id) == (1, 2)
    moved = tracker.match([Box(305, 2, 100, 100), Box(4, 3, 100, 100)])  # the order of detections does not matter
    assert [t.id for t in moved] == [2, 1]
    assert [t.id for t in tracker.match([Box(0, 0, 100, 100)])] == [1]  # face 2 missed once: kept
    assert [t.id for t in tracker.match([Box(0, 0, 100, 100)])] == [1]  # twice: ended
    assert [t.id for t in tracker.match([Box(300, 0, 100, 100)])] == [3]  # so a face there is a new one
    assert overlap(Box(0, 0, 10, 10), Box(5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert overlap(Box(0, 0, 10, 10), Box(20, 0, 10, 10)) == 0


def test_bad_videos_are_one_line_and_exit_2(tmp_path, capsys):
    import cv2

    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    no_frames = tmp_path / "no-frames.mp4"
    cv2.VideoWriter(str(no_frames), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 64)).release()
    text = tmp_path / "notes.txt"
    text.write_text("FFmpeg would play this as a video of its characters\n" * 50)
    photo = tmp_path / "hopper.jpg"  # FFmpeg played a photo as a video of one frame, where ferlab photo was meant
    Image.open(demo_photos()[1]).convert("RGB").save(photo)
    cases = {garbage: "", empty: "empty file", no_frames: "", tmp_path / "missing.mp4": "cannot read", tmp_path: "not a regular file",
             text: "plain text, not a video", photo: "a still JPEG photo, not a video; ferlab photo finds its faces"}
    for path, expected in cases.items():
        assert main(["video", str(path), "-o", str(tmp_path / "out"), "--quiet"]) == 2, path
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"ferlab: error: {path}:") and "\n" not in error, error
        assert expected in error
    assert main(["video", str(garbage), "--smoothing", "1", "-o", str(tmp_path / "out")]) == 2
    assert "--smoothing 1.0" in capsys.readouterr().err
    for options, flag in [({"detect_every": float("nan")}, "--detect-every nan"),
                          ({"detect_every": 2.5}, "--detect-every 2.5"), ({"detect_every": True}, "--detect-every True"),
                          ({"smoothing": float("nan")}, "--smoothing nan"),
                          ({"smoothing": "0.5"}, "--smoothing 0.5")]:  # through the API: NaN ran, a string was a TypeError
        with pytest.raises(FerlabError, match=f"^{flag}: expected"):
            VideoOptions(**options)


NO_AVIF = pytest.mark.skipif(not features.check("avif"), reason="this Pillow was built without AVIF")


@pytest.mark.parametrize("suffix, named", [("bmp", "BMP"), pytest.param("avif", "AVIF", marks=NO_AVIF), ("gif", "GIF"),
                                           ("webp", "WebP"), ("png", "PNG"), ("tiff", "TIFF"), ("ppm", "PPM"), ("tga", "TGA")])
def test_a_still_photo_of_any_format_is_one_line_pointing_at_photo(tmp_path, capsys, suffix, named):
    """FFmpeg plays a still BMP, AVIF, GIF, WebP ... as a one-frame video: an annotated "video" of
    the photo was written, where ``ferlab photo`` was meant (only JPEG, PNG and TIFF were refused)."""
    still = tmp_path / f"hopper.{suffix}"
    Image.fromarray(two_faces_scene(0)[::2, ::2]).save(still)
    assert main(["video", str(still), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"ferlab: error: {still}: a still {named} photo, not a video; "
                                       "ferlab photo finds its faces\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("suffix", ["gif", "png", "webp", pytest.param("avif", marks=NO_AVIF)])
def test_an_animated_image_is_a_video_of_all_its_frames(tmp_path, capsys, suffix):
    """An animated GIF, PNG, WebP or AVIF is read by Pillow, frame by frame, at the rate its first
    delay gives (FFmpeg found no frames in an animated WebP)."""
    frames = [Image.fromarray(two_faces_scene(shift)) for shift in (0, 4, 8, 12)]
    animation = tmp_path / f"two.{suffix}"
    frames[0].save(animation, save_all=True, append_images=frames[1:], duration=200, loop=0)
    assert main(["video", str(animation), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "out" / "two-summary.json").read_text())
    assert summary["frames"] == summary["frames_announced"] == 4 and summary["fps"] == 5.0
    assert sorted(f["frames"] for f in summary["faces"]) == [4, 4]  # both faces, in every frame
    times = sorted({float(row["time_s"]) for row in read_rows(tmp_path / "out" / "two-frames.csv")})
    assert times == [0.0, 0.2, 0.4, 0.6]


def test_a_multi_page_tiff_is_not_a_video(tmp_path, capsys):
    pages = [Image.fromarray(two_faces_scene(shift)[::2, ::2]) for shift in (0, 8)]
    document = tmp_path / "scan.tiff"
    pages[0].save(document, save_all=True, append_images=pages[1:])
    assert main(["video", str(document), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    assert "a multi-page TIFF (a document's pages), not a video" in capsys.readouterr().err


def test_an_animation_announcing_an_oversized_canvas_is_refused_before_a_frame_is_decoded(tmp_path, capsys):
    import struct

    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue")]
    animation = tmp_path / "huge.gif"
    frames[0].save(animation, save_all=True, append_images=frames[1:], duration=100, loop=0)
    data = bytearray(animation.read_bytes())
    data[6:10] = struct.pack("<HH", 7000, 7000)  # the logical screen: 49 MP, 147 MB a frame decoded
    animation.write_bytes(bytes(data))
    assert main(["video", str(animation), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    assert capsys.readouterr().err == f"ferlab: error: {animation}: frames of 7000x7000 are over the limit of 40,000,000 pixels\n"


def test_an_animation_damaged_midway_gives_the_frames_before_the_damage(tmp_path, capsys):
    """An animated PNG announces its frames (its acTL chunk): those after the damage are one line."""
    frames = [Image.fromarray(two_faces_scene(shift)[::2, ::2]) for shift in range(0, 40, 4)]
    whole = tmp_path / "whole.png"
    frames[0].save(whole, save_all=True, append_images=frames[1:], duration=40, loop=0)
    data = bytearray(whole.read_bytes())
    data[len(data) * 2 // 3:] = bytes(len(data) - len(data) * 2 // 3)  # the last third zeroed
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(bytes(data))
    assert main(["video", str(damaged), "-o", str(tmp_path / "out"), "--quiet", "--detector", "haar"]) == 2
    summary = json.loads((tmp_path / "out" / "damaged-summary.json").read_text())
    assert summary["frames_announced"] == 10 and 0 < summary["frames"] < 10
    assert f"only {summary['frames']} of the 10 frames it announces" in capsys.readouterr().err


def test_a_cut_short_mp4_is_one_line_on_the_process_stderr(tmp_path):
    """OpenCV and FFmpeg log from C++ straight to the process's stderr ("[ERROR:0@0.010] global
    cap_ffmpeg_impl.hpp:1479 open VIDEOIO/FFMPEG: Failed to initialize VideoCapture", "moov atom
    not found"), past Python's sys.stderr: the command is run as a user runs it, and its whole
    stderr read."""
    import subprocess
    import sys

    data = write_video(tmp_path / "whole.mp4", [two_faces_scene(0)[::4, ::4]] * 5).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:data.index(b"stsd")])  # every frame, and an index cut before it names the codec
    result = subprocess.run([sys.executable, "-m", "ferlab", "video", str(cut), "-o", str(tmp_path / "out"), "--quiet"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2 and result.stderr == f"ferlab: error: {cut}: not a video OpenCV can read\n"


def test_a_video_damaged_midway_is_processed_up_to_the_damage_and_said_so(tmp_path, capsys):
    """Motion-JPEG frames zeroed in the middle of the file: OpenCV stops at the hole. The results
    cover the frames before it; the shortfall against the container's count is one line, exit 2."""
    import cv2

    frames = [two_faces_scene(i % 10)[::2, ::2] for i in range(30)]
    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (320, 240))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    data = bytearray(whole.read_bytes())
    data[len(data) // 2: len(data) * 2 // 3] = bytes(len(data) * 2 // 3 - len(data) // 2)
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(bytes(data))

    assert main(["video", str(whole), "-o", str(tmp_path / "whole-out"), "--quiet", "--detector", "haar"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["video", str(damaged), "-o", str(tmp_path / "out"), "--quiet", "--detector", "haar"]) == 2
    captured = capsys.readouterr()
    summary = json.loads((tmp_path / "out" / "damaged-summary.json").read_text())
    assert summary["frames_announced"] == 30 and 0 < summary["frames"] < 30
    assert len(read_rows(tmp_path / "out" / "damaged-frames.csv")) > 0  # the frames before the hole
    assert captured.err == (f"ferlab: error: {damaged}: only {summary['frames']} of the 30 frames it announces "
                            f"could be decoded (damaged or cut off); the results cover those {summary['frames']}\n")
    import ferlab

    with pytest.warns(UserWarning, match=rf"^{damaged}: only {summary['frames']} of the 30 frames"):
        again = ferlab.load("default").video(damaged, tmp_path / "api", detector="haar")
    assert again == summary



def test_a_video_of_a_very_long_name_gets_outputs_a_file_system_can_hold(video, tmp_path):
    import shutil

    long = shutil.copy(video, tmp_path / ("v" * 245 + ".mp4"))  # + "-annotated.mp4" would be 263 bytes
    assert main(["video", str(long), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(names) == 4 and all(name.startswith("v" * 150) and len(name.encode()) <= 255 for name in names)


def test_outputs_never_replace_another_videos_results_or_a_file_of_their_name(video, tmp_path, capsys):
    import shutil

    out, other = tmp_path / "out", tmp_path / "elsewhere"
    other.mkdir()
    assert main(["video", str(video), "-o", str(out), "--quiet"]) == 0
    assert main(["video", str(video), "-o", str(out), "--quiet"]) == 0  # the same video again: its own results
    first = (out / "two-summary.json").read_bytes()
    same_name = shutil.copy(video, other / "two.mp4")  # another folder's two.mp4 replaced these without a word
    capsys.readouterr()
    assert main(["video", str(same_name), "-o", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"ferlab: error: {out / 'two-summary.json'}: holds the results of {video}, another video of this name, "
        "which these would replace; choose another output folder (-o)")
    assert (out / "two-summary.json").read_bytes() == first
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "two-frames.csv").write_text("my own table\n")
    assert main(["video", str(video), "-o", str(mine), "--quiet"]) == 2
    assert f"{mine / 'two-frames.csv'}: exists and is not an output of ferlab video" in capsys.readouterr().err
    assert (mine / "two-frames.csv").read_text() == "my own table\n" and sorted(p.name for p in mine.iterdir()) == ["two-frames.csv"]


def test_a_run_cut_short_leaves_outputs_its_rerun_knows_as_its_own(video, tmp_path, capsys, monkeypatch):
    """A full disk at the timeline, after the annotated video and the CSV: the rerun replaces them
    (they were refused as files of unknown origin); a run failing before its first output leaves
    nothing, not even the summary it claimed the folder with."""
    import ferlab.report.figures

    def full_disk(*args, **kwargs):
        raise FerlabError("timeline.png: cannot write it (No space left on device)")

    out = tmp_path / "out"
    with monkeypatch.context() as patched:
        patched.setattr(ferlab.report.figures, "plot_timeline", full_disk)
        assert main(["video", str(video), "-o", str(out), "--quiet"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    claimed = json.loads((out / "two-summary.json").read_text())
    assert claimed["complete"] is False and claimed["video_file"] == str(video.resolve())
    assert sorted(p.name for p in out.iterdir()) == ["two-annotated.mp4", "two-frames.csv", "two-summary.json"]
    assert main(["video", str(video), "-o", str(out), "--quiet"]) == 0
    summary = json.loads((out / "two-summary.json").read_text())
    assert summary["complete"] is True and summary["frames"] == FRAMES and (out / "two-timeline.png").exists()

    def broken_frame(*args, **kwargs):
        raise FerlabError("a frame that cannot be read")

    early = tmp_path / "early"
    monkeypatch.setattr("ferlab.video.frame_faces", broken_frame)
    assert main(["video", str(video), "-o", str(early), "--quiet"]) == 2
    assert not early.exists()  # not even the folder it made
