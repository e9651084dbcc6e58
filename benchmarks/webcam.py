"""Round trips per second of the page's camera mode at 640x480 on this machine, with the overlay
map ("show Grad-CAM", the page's default) and without it, side by side in one run.

    python benchmarks/webcam.py [--seconds 10] [--rounds 2] [--model default]

Starts ``ferlab serve``'s app on a free port, opens the page in headless Chromium with a fake
camera playing a 640x480 video made from two real photos (one face the live detector keeps), and
counts the frames answered (grab, JPEG-encode, POST /api/frame, detect, classify, explain, draw)
over ``--seconds`` after a 2-second settling, the explanation box unticked and ticked in turn for
``--rounds`` rounds. Chromium and the server share the machine's cores, as they would on a laptop.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.browser import chromium_page, write_y4m  # noqa: E402
from tests.serve.conftest import serving  # noqa: E402 - the tests' server in a thread
from tests.test_video import two_faces_scene  # noqa: E402

from ferlab.checkpoint import load_model  # noqa: E402
from ferlab.serve.app import create_app  # noqa: E402


def round_trips(page, seconds: float) -> tuple[int, float, str]:
    """Frames answered over ``seconds`` after 2 s of settling, and the page's own last reading."""
    time.sleep(2)
    first, started = int(page.get_attribute("body", "data-frames")), time.perf_counter()
    time.sleep(seconds)
    last, elapsed = int(page.get_attribute("body", "data-frames")), time.perf_counter() - started
    return last - first, elapsed, page.inner_text("#rate")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    loaded = load_model(args.model)
    totals = {False: [0, 0.0], True: [0, 0.0]}
    with serving(create_app(loaded)) as url, tempfile.TemporaryDirectory() as folder:
        camera = write_y4m(Path(folder) / "camera.y4m", [two_faces_scene(i % 10) for i in range(10)])
        with chromium_page(1200, 900, camera=camera) as (page, errors):
            page.goto(url + "/")
            page.click("#camera")
            page.wait_for_selector("body[data-frames]", timeout=60_000)
            print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; 640x480 fake camera, "
                  f"one face in view; model {args.model}, explained by {loaded.overlay_method}")
            for _ in range(args.rounds):
                for explain in (False, True):
                    page.set_checked("#explain", explain)
                    frames, seconds, shown = round_trips(page, args.seconds)
                    totals[explain][0] += frames
                    totals[explain][1] += seconds
                    print(f"{'with' if explain else 'without'} the map: {frames} round trips in {seconds:.1f} s = "
                          f"{frames / seconds:.1f} per second (the page's last reading: {shown})")
    rate = {explain: frames / seconds for explain, (frames, seconds) in totals.items()}
    print(f"all rounds: {rate[False]:.1f} per second without the map, {rate[True]:.1f} with it "
          f"({rate[True] / rate[False]:.2f}x); browser errors: {errors or 'none'}")


if __name__ == "__main__":
    main()
