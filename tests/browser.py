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
def chromium_page(width: int = 1280, height: int = 900):
    """(page, errors): a fresh page, and a list that collects console errors, page errors and
    failed requests. Skips where Chromium is missing, except in CI, where that is a failure."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing; .ci/run installs it with apt-get")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("requestfailed", lambda request: errors.append(f"request failed: {request.url}"))
        try:
            yield page, errors
        finally:
            browser.close()


def screenshot_path(name: str, fallback: Path) -> Path:
    """Where a test saves its screenshot: $FERLAB_SCREENSHOTS if set, else the test's tmp folder."""
    folder = Path(os.environ.get("FERLAB_SCREENSHOTS", fallback))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name
