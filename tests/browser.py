"""Headless Debian Chromium driven by Playwright, for the page tests (Playwright's own browser
download does not work offline, so it is pointed at /usr/bin/chromium)."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


@contextlib.contextmanager
def chromium_page(width: int = 1280, height: int = 900, camera: Path | None = None):
    """(page, errors): a fresh page, and a list that collects console errors, page errors and
    failed requests. ``camera``: a .y4m file Chromium's fake camera plays (looping), with the
    permission already granted. Skips where Chromium is missing, except in CI, where that is a
    failure."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing; .ci/run installs it with apt-get")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        fake_camera = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                       f"--use-file-for-fake-video-capture={camera}"] if camera else []
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS + fake_camera, headless=True)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("requestfailed", lambda request: errors.append(f"request failed: {request.url}"))
        try:
            yield page, errors
        finally:
            browser.close()


def write_y4m(path: Path, frames, fps: int = 25) -> Path:
    """(H, W, 3) uint8 RGB frames as a YUV 4:2:0 .y4m video, the format Chromium's fake camera reads."""
    import numpy as np
    from PIL import Image

    height, width = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            y, u, v = (np.asarray(plane) for plane in Image.fromarray(frame).convert("YCbCr").split())
            half = (width // 2, height // 2)
            out.write(b"FRAME\n" + y.tobytes())
            for chroma in (u, v):
                out.write(np.asarray(Image.fromarray(chroma).resize(half, Image.Resampling.BILINEAR)).tobytes())
    return path


def screenshot_path(name: str, fallback: Path) -> Path:
    """Where a test saves its screenshot: $FERLAB_SCREENSHOTS if set, else the test's tmp folder."""
    folder = Path(os.environ.get("FERLAB_SCREENSHOTS", fallback))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name
