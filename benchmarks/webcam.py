"""Round trips per second of the page's camera mode at 640x480 on this machine.

    python benchmarks/webcam.py [--seconds 20] [--model default]

Starts ``ferlab serve``'s app on a free port, opens the page in headless Chromium with a fake
camera playing a 640x480 video made from two real photos (one face the live detector keeps), and
counts the frames answered (grab, JPEG-encode, POST /api/frame, detect, classify, draw) over
``--seconds`` after a 3-second warm-up. Chromium and the server share the machine's cores, as they
would on a laptop.
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    with serving(create_app(load_model(args.model))) as url, tempfile.TemporaryDirectory() as folder:
        camera = write_y4m(Path(folder) / "camera.y4m", [two_faces_scene(i % 10) for i in range(10)])
        with chromium_page(1200, 900, camera=camera) as (page, errors):
            page.goto(url + "/")
            page.click("#camera")
            page.wait_for_selector("body[data-frames]", timeout=60_000)
            time.sleep(3)
            first, started = int(page.get_attribute("body", "data-frames")), time.perf_counter()
            time.sleep(args.seconds)
            last, seconds = int(page.get_attribute("body", "data-frames")), time.perf_counter() - started
            shown = page.inner_text("#rate")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; 640x480 fake camera, one face in view")
    print(f"round trips: {last - first} in {seconds:.1f} s = {(last - first) / seconds:.1f} per second "
          f"(the page's last reading: {shown}); browser errors: {errors or 'none'}")


if __name__ == "__main__":
    main()
