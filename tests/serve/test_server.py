"""``ferlab serve``: the JSON endpoint under concurrent requests, and the page in a real browser."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn

from ferlab.checkpoint import load_model
from ferlab.labels import EMOTIONS
from ferlab.photos import demo_photos
from ferlab.serve.app import create_app
from tests.browser import chromium_page, screenshot_path

PHOTOS = demo_photos()


@pytest.fixture(scope="module")
def server():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(load_model("default")), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    instance.should_exit = True
    thread.join(timeout=10)


def post(url: str, path: Path, explain: bool = True) -> httpx.Response:
    with open(path, "rb") as file:
        return httpx.post(f"{url}/api/predict", files={"file": (path.name, file.read())},
                          data={"explain": "true" if explain else "false"}, timeout=120)


def test_concurrent_requests_equal_sequential_ones(server):
    sequential = {path: post(server, path).json() for path in PHOTOS}
    jobs = [PHOTOS[i % len(PHOTOS)] for i in range(16)]
    with ThreadPoolExecutor(max_workers=16) as pool:  # 16 at once, loopback only
        answers = list(pool.map(lambda path: post(server, path), jobs))
    for path, response in zip(jobs, answers):
        assert response.status_code == 200
        assert response.json() == sequential[path]
    face = sequential[PHOTOS[0]]["faces"][0]
    assert face["gradcam"].startswith("data:image/png;base64,") and len(face["box"]) == 4


def test_a_bad_upload_is_a_400_naming_the_file(server):
    response = httpx.post(f"{server}/api/predict", files={"file": ("holiday.jpg", b"not a photo")}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"].startswith("holiday.jpg: not an image")


@pytest.mark.browser
def test_the_page_in_headless_chromium(server, tmp_path):
    with chromium_page(1200, 900) as (page, errors):
        page.goto(server + "/")
        page.set_input_files("#file", str(PHOTOS[0]))
        page.wait_for_selector("#status[data-faces]", timeout=60_000)
        status = page.inner_text("#status")
        label = page.inner_text(".face .label")
        screenshot = screenshot_path("serve.png", tmp_path)
        page.screenshot(path=str(screenshot), full_page=True)
    assert status == "1 face found."
    assert label.startswith("Face 1: ") and label.split(": ")[1].split(" ")[0] in EMOTIONS
    assert errors == []
