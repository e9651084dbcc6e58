"""The page's camera mode (issue 13, item 2) in headless Chromium with a fake camera playing a
video made from real photos, and the frame endpoint's bounds."""

from __future__ import annotations

import base64
import io
import math
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from ferlab.faces import Detection, read_photo
from ferlab.labels import EMOTIONS
from ferlab.photos import analyze, heat_image
from ferlab.serve.app import MAX_FRAME_BYTES, FrameGate
from tests.browser import chromium_page, screenshot_path, write_y4m
from tests.test_video import two_faces_scene


def jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def test_a_frame_gets_boxes_labels_and_probabilities(server):
    response = httpx.post(f"{server}/api/frame", content=jpeg(two_faces_scene(0)), timeout=60)
    assert response.status_code == 200
    answer = response.json()
    assert (answer["width"], answer["height"]) == (640, 480)
    # Camera faces are large: the live minimum (80 px) keeps Grace Hopper's face (130 px), not the
    # astronaut's (64 px) in this scene.
    assert len(answer["faces"]) == 1
    face = answer["faces"][0]
    assert face["box"][2] >= 80 and face["label"] in EMOTIONS and face["score"] > 0
    assert abs(sum(face["probabilities"].values()) - 1) < 1e-3
    assert "crop" not in face and "annotated" not in answer  # no images: the page draws over the video


def test_an_explained_frame_carries_each_faces_map_and_where_it_lies():
    from fastapi.testclient import TestClient

    from ferlab.checkpoint import load_model
    from ferlab.serve.app import LIVE_MIN_FACE, create_app

    loaded, frame = load_model("default", device="cpu"), jpeg(two_faces_scene(0))
    client = TestClient(create_app(loaded))
    plain, explained = client.post("/api/frame", content=frame).json(), client.post("/api/frame?explain=true", content=frame).json()
    (face,), (direct,) = explained["faces"], analyze(loaded, read_photo(frame), explain=True, mode="detect",
                                                      detection=Detection(min_face=LIVE_MIN_FACE))
    assert face["box"] == plain["faces"][0]["box"] == direct.box.to_list() and "heatmap" not in plain["faces"][0]
    assert face["explained_by"] == "gradcam" and face["seen"] == direct.seen.to_list()
    assert face["seen"][2] > face["box"][2]  # the margin the crop takes around the detector's box
    drawn = np.asarray(Image.open(io.BytesIO(base64.b64decode(face["heatmap"].split(",", 1)[1]))))
    assert drawn.shape == (48, 48, 3) and np.abs(drawn.astype(int) - heat_image(direct.cam)).max() <= 1
    refused = client.post("/api/frame?explain=perhaps", content=frame)
    assert refused.status_code == 422 and refused.json()["error"].startswith("explain: ")


def test_frames_are_bounded_in_size_and_rate(server):
    too_big = httpx.post(f"{server}/api/frame", content=b"\xff" * (MAX_FRAME_BYTES + 1), timeout=60)
    assert too_big.status_code == 413 and "larger than 2 MiB" in too_big.json()["error"]
    huge = np.zeros((1200, 2000, 3), np.uint8)  # 2.4 megapixels, over full HD
    refused = httpx.post(f"{server}/api/frame", content=jpeg(huge), timeout=60)
    assert refused.status_code == 400 and "frame:" in refused.json()["error"]
    time.sleep(0.05)  # after 1/30 s the next frame is taken
    garbage = httpx.post(f"{server}/api/frame", content=b"not an image", timeout=60)
    assert garbage.status_code == 400 and set(garbage.json()) == {"error"}


def test_frames_faster_than_the_rate_get_429():
    from fastapi.testclient import TestClient

    from ferlab.checkpoint import load_model
    from ferlab.serve.app import create_app

    client = TestClient(create_app(load_model("default", device="cpu"), frame_rate=0.05))  # one per 20 s, even on a busy machine
    first = client.post("/api/frame", content=jpeg(two_faces_scene(0)))
    too_soon = client.post("/api/frame", content=jpeg(two_faces_scene(0)))
    assert first.status_code == 200
    assert too_soon.status_code == 429 and too_soon.json() == {"error": "over 0.05 frames a second"}
    assert 15_000 < first.json()["next_in_ms"] <= 20_000  # when the server takes the next one


def test_min_face_sets_the_smallest_face_a_camera_frame_is_searched_for():
    from fastapi.testclient import TestClient

    from ferlab.checkpoint import load_model
    from ferlab.serve.app import create_app

    loaded, frame = load_model("default", device="cpu"), jpeg(two_faces_scene(0))  # faces of 130 and 64 pixels
    for min_face, found in ((40, 2), (200, 0)):
        answer = TestClient(create_app(loaded, live_min_face=min_face)).post("/api/frame", content=frame).json()
        assert len(answer["faces"]) == found, min_face


def test_the_gate_takes_one_frame_at_a_time_at_most_30_a_second():
    now = [100.0]  # seconds, on a clock the test moves (a busy machine cannot make it flaky)
    gate = FrameGate(rate=30, clock=lambda: now[0])
    assert gate.enter() is None
    assert "busy" in gate.enter()  # a second frame while the first runs
    gate.leave()
    now[0] += 0.03
    assert "over 30 frames a second" in gate.enter()  # 30 ms after the last one: too soon
    now[0] += 0.004
    assert gate.enter() is None  # 34 ms after it
    gate.leave()


def test_the_gate_says_how_long_until_it_takes_the_next_frame():
    now = [100.0]
    gate = FrameGate(rate=30, clock=lambda: now[0])
    assert gate.wait() == 0  # nothing taken yet
    assert gate.enter() is None
    now[0] += 0.01
    gate.leave()
    assert gate.wait() == pytest.approx(1 / 30 - 0.01)
    now[0] += math.ceil(1000 * gate.wait()) / 1000  # the whole milliseconds the server names
    assert gate.enter() is None  # taken when it said
    gate.leave()
    now[0] += 1
    assert gate.wait() == 0


@pytest.mark.browser
def test_the_camera_keeps_to_a_slow_servers_rate_without_being_refused(tmp_path):
    # At 4 frames a second the page, answered in about 50 ms, would send each next frame far too
    # early: it waits for the time the server names instead of collecting 429s.
    from ferlab.checkpoint import load_model
    from ferlab.serve.app import create_app
    from tests.serve.conftest import serving

    camera = write_y4m(tmp_path / "camera.y4m", [two_faces_scene(i % 10) for i in range(10)])
    with serving(create_app(load_model("default-fast"), frame_rate=4)) as url, \
            chromium_page(1200, 900, camera=camera) as (page, errors):
        page.goto(url + "/")
        page.uncheck("#explain")
        page.click("#camera")
        page.wait_for_selector("body[data-frames]", timeout=60_000)
        first, started = int(page.get_attribute("body", "data-frames")), time.perf_counter()
        time.sleep(3)
        frames, seconds = int(page.get_attribute("body", "data-frames")) - first, time.perf_counter() - started
        page.click("#camera")
    assert errors == []  # no 429 (the browser logs each one)
    assert 2 <= frames / seconds <= 4 * 1.1 + 1 / seconds  # kept up, and not faster than allowed


# The overlay canvas's RGBA at the centre of the first face's box (the page records the box it drew).
CENTRE_OF_THE_FIRST_FACE = """() => {
  const overlay = document.getElementById("overlay"), [x, y, w, h] = JSON.parse(overlay.dataset.box);
  return Array.from(overlay.getContext("2d").getImageData(Math.round(x + w / 2), Math.round(y + h / 2), 1, 1).data);
}"""


@pytest.mark.browser
def test_the_camera_mode_draws_a_face_box_and_label_in_chromium(server, tmp_path):
    camera = write_y4m(tmp_path / "camera.y4m", [two_faces_scene(i % 10) for i in range(10)])
    with chromium_page(1200, 900, camera=camera) as (page, errors):
        page.goto(server + "/")
        assert page.is_hidden("#photo")  # no broken image before anything is uploaded
        page.click("#camera")
        page.wait_for_selector("#overlay[data-faces='1']", timeout=60_000)
        page.wait_for_selector("body[data-rate]", timeout=60_000)  # a second of round trips has been counted
        page.wait_for_selector("#overlay[data-explained-by='gradcam']", timeout=60_000)  # "show Grad-CAM" is ticked
        heat = page.evaluate(CENTRE_OF_THE_FIRST_FACE)
        screenshot = screenshot_path("webcam.png", tmp_path)
        page.screenshot(path=str(screenshot))
        page.uncheck("#explain")
        page.wait_for_selector("#overlay[data-explained-by='']", timeout=60_000)
        bare = page.evaluate(CENTRE_OF_THE_FIRST_FACE)
        label = page.get_attribute("#overlay", "data-label")
        rate = float(page.get_attribute("body", "data-rate"))
        status = page.inner_text("#status")
        page.click("#camera")  # stop
        assert page.is_hidden("#live")
    assert label in EMOTIONS and status == f"Camera on: {label}."
    assert heat[3] > 100 and bare[3] == 0  # the map covers the face while explaining, and only then
    assert rate > 0
    assert errors == []
    assert screenshot.stat().st_size > 20_000


@pytest.mark.browser
def test_an_error_clears_the_previous_result(server, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with chromium_page(1200, 900) as (page, errors):
        page.goto(server + "/")
        page.set_input_files("#file", str(two_faces_photo(tmp_path)))
        page.wait_for_selector("#status[data-faces]", timeout=60_000)
        assert page.is_visible("#photo")
        page.set_input_files("#file", str(bad))
        page.wait_for_selector("#status.error", timeout=60_000)
        assert page.is_hidden("#result") and page.locator(".face").count() == 0
        message = page.inner_text("#status")
    assert message.startswith("bad.png: ")
    assert [e for e in errors if "400" not in e] == []  # the browser logs the 400 itself


def two_faces_photo(folder) -> object:
    path = folder / "two.png"
    Image.fromarray(two_faces_scene(0)).save(path)
    return path
