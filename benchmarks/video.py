"""Frames per second of ``ferlab video`` at 640x480 on this machine.

    python benchmarks/video.py [--frames 150] [--model default]

The video is made from two real photos (scikit-image's astronaut and matplotlib's Grace Hopper,
side by side, one panning), so every frame holds two faces. Each setting runs the whole command
path (``video.process_video``: decoding, detection, classification, drawing, encoding) once after
a short warm-up, all in one process, so the ratios between settings are fair.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_video import two_faces_scene, write_video  # noqa: E402 - the tests' video, made from real photos

from ferlab.checkpoint import load_model  # noqa: E402
from ferlab.faces import Detection  # noqa: E402
from ferlab.video import VideoOptions, process_video  # noqa: E402

SETTINGS = {
    "hog, every frame": VideoOptions(),
    "hog, every frame, --explain": VideoOptions(explain=True),
    "hog, every 5th frame": VideoOptions(detect_every=5),
    "haar, every frame": VideoOptions(detection=Detection("haar")),
    "haar, every 5th frame": VideoOptions(detect_every=5, detection=Detection("haar")),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    loaded = load_model(args.model, device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        video = write_video(folder / "two.mp4", [two_faces_scene(i % 10) for i in range(args.frames)])
        warm = write_video(folder / "warm.mp4", [two_faces_scene(0)] * 5)
        print(f"# {args.frames} frames of 640x480, two faces each; {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)")
        print("| setting | frames/s | faces per frame |")
        print("| --- | --- | --- |")
        for name, options in SETTINGS.items():
            process_video(loaded, warm, folder, options, progress=False)
            started = time.perf_counter()
            summary = process_video(loaded, video, folder, options, progress=False)
            seconds = time.perf_counter() - started
            rows = sum(face["frames"] for face in summary["faces"])
            print(f"| {name} | {summary['frames'] / seconds:.1f} | {rows / summary['frames']:.2f} |")


if __name__ == "__main__":
    main()
