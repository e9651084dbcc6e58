"""Emotions in a video: find the faces in each frame, follow each face from frame to frame, smooth
its probabilities over time, and write what was seen.

``ferlab video IN -o OUT/`` writes, for a video ``IN`` named ``clip.mp4`` (any video OpenCV reads,
or an animated GIF, PNG, WebP or AVIF, whose frames Pillow decodes):

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
import itertools
import json
import numbers
import os
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

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


def video_kind(path: Path) -> str:
    """How ``path`` is read: "animation" (an animated GIF, PNG, WebP or AVIF, whose frames Pillow
    decodes) or "video" (anything else, for FFmpeg under OpenCV). Refused in one line: what is not a
    regular file; plain text, which FFmpeg plays as a video of its characters (its "tty" format);
    a still photo, which it plays as one frame (an annotated "video" of the photo, where ferlab
    photo was meant); a multi-page TIFF, a document's pages."""
    try:
        if not stat.S_ISREG(file_status(path).st_mode):
            raise VideoError(f"{path}: not a regular file (a folder, device, socket or FIFO)")
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as error:
        raise VideoError(f"{path}: cannot read ({error.strerror or error})") from None
    if not head:
        raise VideoError(f"{path}: empty file")
    image_format, animated = image_frames(path)  # before the text check: a PPM's header and gray pixels are text
    if animated and image_format != "TIFF":
        return "animation"
    if animated:
        raise VideoError(f"{path}: a multi-page TIFF (a document's pages), not a video; ferlab photo reads its first page")
    # A photo Pillow cannot open (an iPhone's HEIC, a damaged JPEG) is named by its first bytes
    if still := FORMAT_NAMES.get(image_format, image_format) or photo_format(head):
        raise VideoError(f"{path}: a still {still} photo, not a video; ferlab photo finds its faces")
    if b"\0" not in head and not head.startswith(b"YUV4MPEG2") and is_utf8(head):
        raise VideoError(f"{path}: plain text, not a video")
    return "video"


# Formats Pillow names that are not photos: it identifies MPEG-1/2 video by its first bytes
NOT_PHOTOS = {"MPEG"}
FORMAT_NAMES = {"MPO": "JPEG", "WEBP": "WebP"}  # Pillow's names, as photos' formats are named elsewhere


def image_frames(path: Path) -> tuple[str | None, bool]:
    """(the image format Pillow reads ``path`` as, or None; whether it has a second frame). A
    camera JPEG's preview pictures (MPO) are not frames. Nothing is decoded."""
    try:
        with warnings.catch_warnings():  # a header of many pixels warns; the frames are checked later
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                if image.format in NOT_PHOTOS:
                    return None, False
                return image.format, bool(getattr(image, "is_animated", False)) and image.format != "MPO"
    except Exception:  # noqa: BLE001 - not an image Pillow can open (a video), or a damaged one
        return None, False


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


def read_frames(path: Path, kind: str | None = None) -> tuple[Iterator[Frame], float, int]:
    """(frames, frames per second, frame count or 0 where the file does not say) of any video
    OpenCV can read, or of an animated image; ``kind`` is ``video_kind(path)``, found here where not
    given. Unreadable files and videos without a frame are VideoErrors naming the file."""
    frames, fps, count = FRAME_READERS[kind or video_kind(path)](path)
    first = next(frames, None)
    if first is None:
        raise VideoError(f"{path}: the video has no frames")
    if problem := oversized(path, first.rgb.shape[1], first.rgb.shape[0]):
        frames.close()
        raise VideoError(problem)
    return itertools.chain([first], frames), fps, count


def oversized(path: Path, width: int, height: int) -> str | None:
    return f"{path}: frames of {width}x{height} are over the limit of {MAX_PIXELS:,} pixels" \
        if width * height > MAX_PIXELS else None


def video_frames(path: Path) -> tuple[Iterator[Frame], float, int]:
    """A video's frames as FFmpeg, under OpenCV, decodes them."""
    import cv2

    # FFmpeg's own log lines ("moov atom not found") would come before our one-line error; set
    # OPENCV_FFMPEG_LOGLEVEL=24 to see its warnings. Read when OpenCV's FFmpeg backend starts.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    with opencv_quiet():  # and OpenCV's own ("[ERROR:0@0.010] ... Failed to initialize VideoCapture")
        capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoError(f"{path}: not a video OpenCV can read")
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if np.isfinite(fps) and 0 < fps <= 1000 else 25.0  # some containers do not say; 25 is the usual

    def frames() -> Iterator[Frame]:
        try:
            for index in itertools.count():
                ok, bgr = capture.read()
                if not ok or bgr is None:
                    break
                yield Frame(index, index / fps, np.ascontiguousarray(bgr[..., ::-1]))
        finally:
            capture.release()
    return frames(), fps, max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))


def animation_frames(path: Path) -> tuple[Iterator[Frame], float, int]:
    """An animated GIF, PNG, WebP or AVIF's frames as Pillow composes them (FFmpeg decodes no
    animated WebP: it was "no frames"). The rate is the first frame's (WebP and AVIF say it once
    that frame is decoded); a delay of 10 ms or less is 100 ms, as browsers play it. A frame too
    damaged to decode ends the frames, as in a video."""
    image = Image.open(path)  # video_kind opened it
    try:
        if problem := oversized(path, *image.size):  # from the header: an oversized canvas is never decoded
            raise VideoError(problem)
        count, first = int(image.n_frames), np.asarray(image.convert("RGB"))
    except VideoError:
        image.close()
        raise
    except Exception as error:  # noqa: BLE001 - damaged headers and first frames raise anything
        image.close()
        raise VideoError(f"{path}: a damaged animation ({error.__class__.__name__}: {str(error)[:80]})") from None
    delay = image.info.get("duration") or 0
    fps = 1000 / (delay if delay > 10 else 100)

    def frames() -> Iterator[Frame]:
        with image:
            yield Frame(0, 0.0, first)
            for index in range(1, count):
                try:
                    image.seek(index)
                    rgb = np.asarray(image.convert("RGB"))
                except Exception:  # noqa: BLE001 - the frames before the damage are the video's; the count says what was lost
                    return
                yield Frame(index, index / fps, rgb)
    return frames(), fps, count


FRAME_READERS = {"video": video_frames, "animation": animation_frames}  # keyed by video_kind


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
    kind = video_kind(path)  # a missing or unreadable video leaves no output folder behind
    out = writable_folder(out)
    stem = within_name_limit(path.stem)
    outputs = {kind: out / f"{stem}-{kind}" for kind in ("annotated.mp4", "frames.csv", "timeline.png", "summary.json")}
    claimed_before = check_replaceable(path, outputs)
    frames, fps, count = read_frames(path, kind)
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
