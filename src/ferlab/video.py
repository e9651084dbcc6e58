"""Emotions in a video: find the faces in each frame, follow each face from frame to frame, smooth
its probabilities over time, and write what was seen.

``ferlab video IN -o OUT/`` writes, for a video ``IN`` named ``clip.mp4``:

    clip-annotated.mp4   the video with each face's box, id, label and confidence (with ``explain``,
                         where the model looked: Grad-CAM, or occlusion, of the label shown)
    clip-frames.csv      one row per face per frame: frame, time_s, face, x, y, w, h, label and the
                         seven smoothed probabilities
    clip-timeline.png    each face's smoothed probabilities over time
    clip-summary.json    per face: frames seen, first and last time, top emotion, mean probabilities

Faces are detected every ``detect_every`` frames; in between, each face keeps its last box (a face
moves little in a few frames at 25-30 frames/s). A detection continues the track whose last box
overlaps it most (intersection over union at least ``min_overlap``); a track not seen for
``max_missed`` detections ends. Each track's probabilities are an exponential moving average:
``p = smoothing * p_previous + (1 - smoothing) * p_frame``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import numbers
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ferlab.checkpoint import LoadedModel
from ferlab.data.images import file_status, photo_format
from ferlab.errors import FerlabError
from ferlab.faces import MAX_PIXELS, Box, Detection, to_gray
from ferlab.labels import EMOTIONS
from ferlab.outputs import read_small_json, within_name_limit, write_text, written
from ferlab.photos import FaceResult, annotate, classify_boxes, find_faces, overlay_maps
from ferlab.runs import writable_folder


class VideoError(FerlabError):
    """A video that cannot be read; the message names the file."""


@dataclass(frozen=True)
class VideoOptions:
    detect_every: int = 1      # frames between face detections (boxes are carried in between)
    smoothing: float = 0.6     # weight of a face's previous probabilities in its moving average (0: none)
    min_overlap: float = 0.3   # intersection over union for a detection to continue a track
    max_missed: int = 5        # detections a track may miss before it ends
    detection: Detection = Detection()  # the face detector and the smallest face
    tta: str = "none"          # test-time augmentation policy of each face's probabilities
    explain: bool = False      # lay each face's explanation (Grad-CAM, or occlusion) over it in the annotated video
    layer: str | None = None   # Grad-CAM's conv layer (None: its default)

    def __post_init__(self):  # the API passes what its caller gave: NaN, a string, 2.5 frames
        whole = isinstance(self.detect_every, numbers.Integral) and not isinstance(self.detect_every, bool)
        if not whole or self.detect_every < 1:
            raise FerlabError(f"--detect-every {self.detect_every}: expected a whole number of frames, 1 or more")
        number = isinstance(self.smoothing, numbers.Real) and not isinstance(self.smoothing, bool)
        if not number or not 0 <= self.smoothing < 1:  # NaN fails the range
            raise FerlabError(f"--smoothing {self.smoothing}: expected 0 (none) up to, not including, 1")


@dataclass(frozen=True)
class Frame:
    index: int          # 0-based
    time: float         # seconds from the start
    rgb: np.ndarray     # (H, W, 3) uint8


def check_video_file(path: Path) -> None:
    """A regular file that is not plain text: FFmpeg, under OpenCV, plays any text file as a video
    of its characters (its "tty" format), which would give a run over a picture of words; nor a
    still photo, which it plays as one frame (an annotated "video" of the photo, where ferlab photo
    was meant)."""
    try:
        if not stat.S_ISREG(file_status(path).st_mode):
            raise VideoError(f"{path}: not a regular file (a folder, device, socket or FIFO)")
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as error:
        raise VideoError(f"{path}: cannot read ({error.strerror or error})") from None
    if not head:
        raise VideoError(f"{path}: empty file")
    if b"\0" not in head and not head.startswith(b"YUV4MPEG2") and is_utf8(head):
        raise VideoError(f"{path}: plain text, not a video")
    if (still := photo_format(head)) in ("JPEG", "TIFF", "HEIC") or (still == "PNG" and b"acTL" not in head):
        # FFmpeg plays a photo as a video of one frame; an animated GIF, PNG or WebP is a video
        raise VideoError(f"{path}: a still {still} photo, not a video; ferlab photo finds its faces")


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start >= len(data) - 3  # only a character cut at the end of the sample
    return True


@contextlib.contextmanager
def opencv_quiet():
    """OpenCV's log silenced for the duration (its errors about a file are ours to say, in one line)."""
    import cv2

    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(level)


def read_frames(path: Path) -> tuple[Iterator[Frame], float, int]:
    """(frames, frames per second, frame count or 0 where the container does not say) of any video
    OpenCV can read. Unreadable files and videos without a frame are VideoErrors naming the file."""
    import cv2

    check_video_file(path)
    # FFmpeg's own log lines ("moov atom not found") would come before our one-line error; set
    # OPENCV_FFMPEG_LOGLEVEL=24 to see its warnings. Read when OpenCV's FFmpeg backend starts.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    with opencv_quiet():  # and OpenCV's own ("[ERROR:0@0.010] ... Failed to initialize VideoCapture")
        capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoError(f"{path}: not a video OpenCV can read")
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if np.isfinite(fps) and 0 < fps <= 1000 else 25.0  # some containers do not say; 25 is the usual
    count = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
    ok, first = capture.read()
    if not ok or first is None:
        capture.release()
        raise VideoError(f"{path}: the video has no frames")
    if first.shape[0] * first.shape[1] > MAX_PIXELS:
        capture.release()
        raise VideoError(f"{path}: frames of {first.shape[1]}x{first.shape[0]} are over the limit of {MAX_PIXELS:,} pixels")

    def frames() -> Iterator[Frame]:
        index, bgr = 0, first
        try:
            while bgr is not None:
                yield Frame(index, index / fps, np.ascontiguousarray(bgr[..., ::-1]))
                ok, bgr = capture.read()
                index += 1
                if not ok:
                    break
        finally:
            capture.release()
    return frames(), fps, count


def overlap(a: Box, b: Box) -> float:
    """Intersection over union of two boxes, 0 to 1."""
    width = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    height = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    inter = max(0, width) * max(0, height)
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    id: int
    box: Box
    probabilities: np.ndarray           # (7,) smoothed
    missed: int = 0                     # detections in a row without this face
    history: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (time, smoothed probabilities)


class Tracker:
    """Face ids that persist across frames: greedy matching of detections to tracks by overlap."""

    def __init__(self, options: VideoOptions):
        self.options, self.tracks, self.ended, self.next_id = options, [], [], 1

    def match(self, boxes: list[Box]) -> list[Track]:
        """The track of each detected box (new tracks for unmatched boxes); tracks no box matched
        count a miss and end after ``max_missed``."""
        pairs = sorted(((overlap(track.box, box), t, b) for t, track in enumerate(self.tracks)
                        for b, box in enumerate(boxes)), key=lambda p: -p[0])
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        for score, t, b in pairs:
            if score < self.options.min_overlap or t in used or b in assigned:
                continue
            assigned[b], used = self.tracks[t], used | {t}
        for t, track in enumerate(self.tracks):
            track.missed = 0 if t in used else track.missed + 1
        for b, box in enumerate(boxes):
            if b not in assigned:
                assigned[b] = Track(self.next_id, box, np.zeros(len(EMOTIONS)))
                self.next_id += 1
                self.tracks.append(assigned[b])
            assigned[b].box = box
        self.ended += [t for t in self.tracks if t.missed > self.options.max_missed]
        self.tracks = [t for t in self.tracks if t.missed <= self.options.max_missed]
        return [assigned[b] for b in range(len(boxes))]

    def smooth(self, track: Track, probabilities: np.ndarray, time: float) -> np.ndarray:
        weight = self.options.smoothing if track.history else 0.0  # a new face starts from its first frame
        track.probabilities = weight * track.probabilities + (1 - weight) * probabilities
        track.history.append((time, track.probabilities.copy()))
        return track.probabilities

    def all_tracks(self) -> list[Track]:
        return sorted(self.ended + self.tracks, key=lambda t: t.id)


def frame_faces(loaded: LoadedModel, frame: Frame, tracker: Tracker, options: VideoOptions) -> list[tuple[Track, FaceResult]]:
    """The faces of one frame with their tracks, probabilities smoothed. On frames between
    detections the visible tracks keep their boxes."""
    gray = to_gray(frame.rgb)
    if frame.index % options.detect_every == 0:
        boxes, _ = find_faces(gray, "detect", options.detection)
        tracks = tracker.match(boxes)
    else:
        tracks = [t for t in tracker.tracks if t.missed == 0]
    faces = classify_boxes(loaded, gray, [t.box for t in tracks], tta=options.tta)
    smoothed = [tracker.smooth(track, np.asarray(face.probabilities), frame.time) for track, face in zip(tracks, faces)]
    cams = [None] * len(faces)
    if options.explain and faces:  # of the smoothed label, the one the video shows
        cams = overlay_maps(loaded, np.stack([face.crop for face in faces]),
                            torch.tensor([int(np.argmax(p)) for p in smoothed]), loaded.overlay_options(options.layer))
    return [(track, FaceResult(face.box, tuple(float(p) for p in probabilities), face.crop, cam))
            for track, face, probabilities, cam in zip(tracks, faces, smoothed, cams)]


CSV_COLUMNS = ["frame", "time_s", "face", "x", "y", "w", "h", "label", *EMOTIONS]


def csv_rows(frame: Frame, faces: list[tuple[Track, FaceResult]]) -> list[list]:
    return [[frame.index, round(frame.time, 3), track.id, *face.box.to_list(), face.label,
             *(round(p, 4) for p in face.probabilities)] for track, face in faces]


def track_summary(track: Track) -> dict:
    """A face's time on screen, its top emotion (the largest mean smoothed probability) and its
    mean probabilities."""
    times = [t for t, _ in track.history]
    mean = np.mean([p for _, p in track.history], axis=0)
    return {"face": track.id, "frames": len(track.history), "first_s": round(times[0], 3), "last_s": round(times[-1], 3),
            "top_emotion": EMOTIONS[int(mean.argmax())],
            "mean_probabilities": {name: round(float(p), 4) for name, p in zip(EMOTIONS, mean)}}


def video_writer(path: Path, fps: float, size: tuple[int, int]):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise VideoError(f"{path}: OpenCV cannot write this video (mp4v)")
    return writer


def check_written(video: Path, frames: int, output: Path) -> None:
    """OpenCV's writer says nothing when a write fails (a full disk): the video is read back, and
    one that does not hold every frame written is a FerlabError naming ``output``."""
    import cv2

    with opencv_quiet():
        capture = cv2.VideoCapture(str(video))
        held = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if capture.isOpened() else 0
        capture.release()
    if held != frames:
        raise FerlabError(f"{output}: cannot write it (OpenCV wrote {frames} frames and the file holds "
                          f"{held}: is the disk full?)")


def check_replaceable(path: Path, outputs: dict[str, Path]) -> bool:
    """Before any work, a FerlabError where an output would replace what this video's earlier run
    did not write: the results of another video of the same name (``a/clip.mp4`` after
    ``b/clip.mp4`` into one folder; its summary says which), or a file of an output's name that no
    summary lists. Returns whether a summary of an earlier run of this video is there."""
    summary = read_small_json(outputs["summary.json"])
    ours = isinstance(summary, dict) and isinstance(summary.get("outputs"), list) and isinstance(summary.get("video"), str)
    if ours and Path(summary.get("video_file") or summary["video"]).resolve() != path.resolve():
        raise FerlabError(f"{outputs['summary.json']}: holds the results of {summary['video']}, another video of "
                          "this name, which these would replace; choose another output folder (-o)")
    listed = set(summary["outputs"]) if ours else set()
    for target in outputs.values():
        if target.exists() and target.name not in listed:
            raise FerlabError(f"{target}: exists and is not an output of ferlab video, which would replace it; "
                              "choose another output folder (-o) or move the file")
    return ours


@contextlib.contextmanager
def outputs_claimed(path: Path, outputs: dict[str, Path], claimed_before: bool) -> Iterator[None]:
    """A first run's summary place holds, until the results replace it, a summary of no results
    (``"complete": false``) listing the outputs: a run cut short after its first output (a full
    disk at the CSV) leaves files its rerun knows as its own. Removed again where the run fails
    before any output is written."""
    if claimed_before:
        yield
        return
    write_text(outputs["summary.json"], json.dumps({"video": str(path), "video_file": str(path.resolve()),
                                                    "complete": False, "outputs": [p.name for p in outputs.values()]}))
    try:
        yield
    except BaseException:
        if not any(p.exists() for kind, p in outputs.items() if kind != "summary.json"):
            outputs["summary.json"].unlink(missing_ok=True)
        raise


def process_video(loaded: LoadedModel, path: Path, out: Path, options: VideoOptions = VideoOptions(), *,
                  progress: bool = True) -> dict:
    """``ferlab video``: see the module's docstring; the outputs go into ``out``, made where it is
    missing. Returns the summary (also written as JSON)."""
    check_video_file(path)  # a missing or unreadable video leaves no output folder behind
    out = writable_folder(out)
    stem = within_name_limit(path.stem)
    outputs = {kind: out / f"{stem}-{kind}" for kind in ("annotated.mp4", "frames.csv", "timeline.png", "summary.json")}
    claimed_before = check_replaceable(path, outputs)
    frames, fps, count = read_frames(path)
    with outputs_claimed(path, outputs, claimed_before):
        return write_video_outputs(loaded, path, outputs, options, (frames, fps, count), progress)


def write_video_outputs(loaded: LoadedModel, path: Path, outputs: dict[str, Path], options: VideoOptions,
                        video: tuple, progress: bool) -> dict:
    """``process_video``'s work on the opened video's ``(frames, fps, count)``: each output in turn,
    the summary (returned) last."""
    from ferlab.progress import progress_bar

    frames, fps, count = video
    tracker, rows, writer, seen = Tracker(options), [], None, 0
    # OpenCV's writer logs a failed write ("FFmpeg: Failed to write frame") and goes on; check_written says it once
    with written(outputs["annotated.mp4"]) as annotated_video, opencv_quiet():
        try:
            for frame in progress_bar(frames, total=count or None, desc=path.name, unit="frame", show=progress):
                faces = frame_faces(loaded, frame, tracker, options)
                rows += csv_rows(frame, faces)
                annotated = np.asarray(annotate(frame.rgb, [face for _, face in faces], [f"#{t.id}" for t, _ in faces]))
                if writer is None:
                    writer = video_writer(annotated_video, fps, (frame.rgb.shape[1], frame.rgb.shape[0]))
                writer.write(np.ascontiguousarray(annotated[..., ::-1]))
                seen += 1
        finally:
            if writer is not None:
                writer.release()
        check_written(annotated_video, seen, outputs["annotated.mp4"])
    with written(outputs["frames.csv"]) as temporary, open(temporary, "w", newline="") as handle:
        csv.writer(handle).writerows([CSV_COLUMNS, *rows])
    faces = [track_summary(t) for t in tracker.all_tracks() if t.history]
    note = None if faces or writer is None else options.detection.rules_out_faces(frame.rgb.shape)
    from ferlab.report.figures import plot_timeline

    plot_timeline({t.id: t.history for t in tracker.all_tracks() if t.history}, outputs["timeline.png"], path.name)
    summary = {"video": str(path), "video_file": str(path.resolve()), "frames": seen, "frames_announced": count or None,
               "fps": round(fps, 3), "seconds": round(seen / fps, 3),
               "detect_every": options.detect_every, "smoothing": options.smoothing,
               "explained_by": loaded.overlay_method if options.explain else None, "faces": faces, "note": note,
               "complete": True, "outputs": [p.name for p in outputs.values()]}
    write_text(outputs["summary.json"], json.dumps(summary, indent=2))
    return summary


def frames_lost(summary: dict) -> str | None:
    """The problem line when fewer frames decoded than the file announces (a damaged or cut-off
    video: its results cover only the frames before the damage), else None. Containers that only
    state a duration give an estimate, so a shortfall within rounding (one frame, or 0.5%) is
    left to the summary's two counts."""
    announced, seen = summary.get("frames_announced") or 0, summary["frames"]
    if announced - seen <= max(1, announced // 200):
        return None
    return (f"{summary['video']}: only {seen} of the {announced} frames it announces could be decoded "
            f"(damaged or cut off); the results cover those {seen}")


def describe_summary(summary: dict) -> str:
    """The command line's per-face summary."""
    lines = [f"{summary['video']}: {summary['frames']} frames ({summary['seconds']:.1f} s), "
             f"{len(summary['faces'])} face{'s' if len(summary['faces']) != 1 else ''}"
             + (f" ({summary['note']})" if summary.get("note") else "")]
    for face in summary["faces"]:
        top = face["top_emotion"]
        lines.append(f"  face #{face['face']}: {face['frames']} frames, {face['first_s']:.1f}-{face['last_s']:.1f} s, "
                     f"mostly {top} ({face['mean_probabilities'][top]:.2f} mean)")
    return "\n".join(lines)
