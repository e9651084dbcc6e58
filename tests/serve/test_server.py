"""``ferlab serve``: the JSON endpoint under concurrent requests, and the page in a real browser."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from ferlab.labels import EMOTIONS
from ferlab.photos import demo_photos
from ferlab.serve.app import MAX_UPLOAD_BYTES
from tests.hostile import announced_png, png_bytes
from tests.browser import chromium_page, screenshot_path
from tests.test_faces import animated_photo

PHOTOS = demo_photos()


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
    assert face["explanation"].startswith("data:image/png;base64,") and len(face["box"]) == 4
    assert face["explained_by"] == "gradcam"


def test_a_bad_upload_is_a_400_naming_the_file(server):
    response = httpx.post(f"{server}/api/predict", files={"file": ("holiday.jpg", b"not a photo")}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"].startswith("holiday.jpg: not an image")


def upload(url: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{url}/api/predict", files={"file": (name, data)}, timeout=60)


def test_hostile_uploads_get_one_error_shape(server):
    """Issue 11: empty, huge, bomb, 16-bit and thin uploads; a missing field and an unknown route.
    Every error is {"error": one line}; nothing is a 500."""
    cases = {
        "empty.jpg": (b"", 400, "empty.jpg: empty file"),
        "huge.jpg": (b"\xff" * (MAX_UPLOAD_BYTES + 1), 413, "huge.jpg: file is larger than 20 MiB"),
        "bomb.png": (announced_png(20000, 10000), 400, "bomb.png: image has 200 MP, above the limit of 40 MP"),
        "wide.png": (announced_png(10000, 5000), 400, "wide.png: image is 10000x5000 (50 MP)"),
    }
    for name, (data, status, message) in cases.items():
        response = upload(server, name, data)
        assert response.status_code == status, name
        assert set(response.json()) == {"error"} and response.json()["error"].startswith(message), response.json()
    missing = httpx.post(f"{server}/api/predict", data={"explain": "true"}, timeout=30)
    assert missing.status_code == 422 and missing.json() == {"error": "file: Field required"}
    photo = PHOTOS[0].read_bytes()
    two = httpx.post(f"{server}/api/predict", files=[("file", ("a.jpg", photo)), ("file", ("b.jpg", photo))], timeout=30)
    assert two.status_code == 400 and two.json() == {"error": "2 files (a.jpg, b.jpg): send one photo per request"}
    unknown = httpx.get(f"{server}/api/nothing", timeout=30)
    assert unknown.status_code == 404 and unknown.json() == {"error": "Not Found"}


def test_explain_in_the_query_is_taken_and_an_unknown_parameter_is_a_400(server):
    """`/api/frame` takes `?explain=true`, and `/api/predict` passed it over (its form field was
    the only way); a typo (`?explian=true`) answered without the maps, without a word. A text
    field where the photo belongs was "file.0: Value error, Expected UploadFile, received: <class 'str'>"."""
    photo = PHOTOS[1].read_bytes()
    asked = httpx.post(f"{server}/api/predict?explain=true", files={"file": (PHOTOS[1].name, photo)}, timeout=60)
    assert asked.status_code == 200 and asked.json()["faces"][0]["explained_by"] == "gradcam"
    assert asked.json() == post(server, PHOTOS[1], explain=True).json()
    for query, form, message in (("explian=true", {}, "unknown query parameter 'explian'; /api/predict takes: explain"),
                                 ("explain=true", {"explain": "false"}, "explain: the form says false and the query true; give one")):
        refused = httpx.post(f"{server}/api/predict?{query}", files={"file": ("h.png", photo)}, data=form, timeout=60)
        assert refused.status_code == 400 and refused.json() == {"error": message}
    frame = httpx.post(f"{server}/api/frame?explain=true&size=big", content=photo, timeout=60)
    assert frame.status_code == 400 and frame.json() == {"error": "unknown query parameter 'size'; /api/frame takes: explain"}
    text = httpx.post(f"{server}/api/predict", data={"file": "hello"}, files={"other": ("x", b"")}, timeout=30)
    assert text.status_code == 422
    assert text.json() == {"error": "file: a text field, not a file; send the photo as a file (curl -F file=@photo.jpg)"}


def asgi_post(app, path: str, chunks: int, declared: int | None = None) -> tuple[int, dict, int]:
    """POST ``chunks`` MiB of a multipart upload straight to the ASGI ``app``: (status, the JSON
    answer, how many MiB the app took from the body before answering)."""
    import asyncio

    head = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
    headers = [(b"content-type", b"multipart/form-data; boundary=XyZ")]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": headers, "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 1), "root_path": "", "asgi": {"version": "3.0"}}
    taken, sent = [0], []

    async def receive():
        taken[0] += 1
        body = head if taken[0] == 1 else b"\0" * 2**20
        last = taken[0] > chunks
        return {"type": "http.request", "body": body + (b"\r\n--XyZ--\r\n" if last else b""), "more_body": not last}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), max(0, taken[0] - 1)


def test_an_upload_over_the_limit_is_refused_before_it_is_read_whole():
    # Starlette spools an upload to a temporary file before the route sees it: 5 GiB would first
    # fill the disk. Declared too long, nothing is read; sent in chunks, reading stops at the limit.
    from ferlab.checkpoint import load_model
    from ferlab.serve.app import create_app

    app = create_app(load_model("default-fast"))
    refusal = {"error": "request: larger than 20 MiB, the most a photo may be"}
    assert asgi_post(app, "/api/predict", 5 * 1024, declared=5 * 2**30) == (413, refusal, 0)
    assert asgi_post(app, "/api/predict", 5 * 1024) == (413, refusal, 21)
    status, answer, taken = asgi_post(app, "/api/predict", 19)  # under the limit: read and answered
    assert (status, taken) == (400, 19) and answer["error"].startswith("big.png: ")


def test_photos_wait_for_one_of_a_few_slots_instead_of_all_running_at_once(monkeypatch):
    from fastapi.testclient import TestClient

    import ferlab.serve.app as app_module
    from ferlab.checkpoint import load_model

    running, most, lock = [0], [0], threading.Lock()

    def slow_predict(*args, **kwargs):  # stands in for a 40 MP photo's seconds of work
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return {"faces": []}

    monkeypatch.setattr(app_module, "predict_bytes", slow_predict)
    client = TestClient(app_module.create_app(load_model("default-fast")))
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: client.post("/api/predict", files={"file": ("a.jpg", b"x")}), range(12)))
    assert [a.status_code for a in answers] == [200] * 12  # every photo answered ...
    assert most[0] <= app_module.PHOTO_SLOTS  # ... never more than the slots at once


@pytest.mark.browser
def test_the_page_names_a_photo_over_the_limit_without_sending_it(server, tmp_path):
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(b"\xff" * (MAX_UPLOAD_BYTES + 1))
    with chromium_page() as (page, errors):
        page.goto(server + "/")
        page.set_input_files("#file", str(huge))
        page.wait_for_selector("#status.error", timeout=60_000)
        message = page.inner_text("#status")
    assert message == "huge.jpg: file is larger than 20 MiB"
    assert errors == []  # no request, so no 413 for the browser to log


@pytest.mark.parametrize("size", [(1, 5000), (5000, 1), (5, 5)])
def test_thin_and_tiny_photos_have_no_faces_not_a_500(server, size):
    strip = png_bytes(np.full(size, 128, dtype=np.uint8))
    response = upload(server, "strip.png", strip)
    assert response.status_code == 200 and response.json()["faces"] == []


def test_a_16_bit_photo_finds_the_face_its_8_bit_copy_finds(server):
    gray = np.asarray(Image.open(PHOTOS[1]).convert("L"))
    eight, sixteen = upload(server, "a.png", png_bytes(gray)), upload(server, "a.png", png_bytes(gray.astype(np.uint16) * 257))
    assert len(eight.json()["faces"]) == 1
    assert [f["box"] for f in sixteen.json()["faces"]] == [f["box"] for f in eight.json()["faces"]]


def test_32_concurrent_answers_are_byte_identical_to_sequential_ones(server):
    group = np.asarray(Image.open(PHOTOS[0]).convert("RGB"))
    many_faces = np.concatenate([group, group[:, ::-1]], axis=1)  # two faces of one size: their order must be fixed
    data = {"pair.png": png_bytes(many_faces), "hopper.jpg": PHOTOS[1].read_bytes()}
    sequential = {name: upload(server, name, body).content for name, body in data.items()}
    assert len(json.loads(sequential["pair.png"])["faces"]) == 2
    jobs = [list(data)[i % 2] for i in range(32)]
    with ThreadPoolExecutor(max_workers=32) as pool:  # 32 at once, loopback only
        answers = list(pool.map(lambda name: upload(server, name, data[name]), jobs))
    for name, response in zip(jobs, answers):
        assert response.status_code == 200 and response.content == sequential[name]


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


@pytest.mark.browser
def test_photos_chosen_together_are_each_shown_in_turn(server, tmp_path):
    """Three photos chosen at once (the second not an image): the first is answered, Next and
    Previous step through the rest, an error shows for its own photo only, and nothing is dropped;
    then an animated photo alone, its first frame's faces and a note saying so."""
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not a png")
    chosen = [str(PHOTOS[0]), str(bad), str(PHOTOS[1])]

    def faces_shown(page) -> str:
        page.wait_for_selector("#status[data-faces]", timeout=60_000)
        return page.inner_text("#status")

    with chromium_page(1200, 900) as (page, errors):
        page.goto(server + "/")
        assert page.is_hidden("#browse")
        page.set_input_files("#file", chosen)
        first = faces_shown(page)
        position = [page.inner_text("#position")]
        disabled = [(page.is_disabled("#previous"), page.is_disabled("#next"))]
        page.keyboard.press("ArrowRight")  # as Next
        page.wait_for_selector("#status.error", timeout=60_000)
        position.append(page.inner_text("#position"))
        error, hidden = page.inner_text("#status"), page.is_hidden("#result")
        page.click("#next")
        last = faces_shown(page)
        position.append(page.inner_text("#position"))
        disabled.append((page.is_disabled("#previous"), page.is_disabled("#next")))
        labels = page.locator(".face .label").all_inner_texts()
        page.click("#previous")
        page.wait_for_selector("#status.error", timeout=60_000)
        position.append(page.inner_text("#position"))
        page.set_input_files("#file", [str(animated_photo(tmp_path)[0])])  # one photo alone: nothing to step through
        alone = faces_shown(page)
        browse_hidden = page.is_hidden("#browse")
    assert first == "1 face found." and last == f"{len(labels)} face{'s' if len(labels) > 1 else ''} found."
    assert alone == "1 face found. Note: first frame only: an animated or multi-page image (ferlab video reads every frame)."
    assert position == [f"photo 1 of 3: {PHOTOS[0].name}", "photo 2 of 3: notes.png", f"photo 3 of 3: {PHOTOS[1].name}",
                        "photo 2 of 3: notes.png"]
    assert disabled == [(True, False), (False, True)]
    assert error.startswith("notes.png: not an image") and hidden and browse_hidden
    assert all(label.startswith(f"Face {i + 1}: ") for i, label in enumerate(labels))
    assert [e for e in errors if "400" not in e] == []  # the browser logs the 400 itself


@pytest.fixture(scope="module")
def graph_server(fast_graph):
    """The app serving an ONNX graph of default-fast (ferlab.graph): answers, and occlusion for Grad-CAM."""
    from ferlab.checkpoint import load_model
    from ferlab.serve.app import create_app
    from tests.serve.conftest import serving

    with serving(create_app(load_model(fast_graph, graphs=True), "fast.onnx")) as url:
        yield url, fast_graph


def decoded(data_uri: str) -> np.ndarray:
    import base64
    import io

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1]))))


def test_a_graph_is_served_with_its_answers_and_explained_by_occlusion(graph_server):
    import ferlab
    from ferlab.checkpoint import load_model
    from ferlab.errors import FerlabError
    from ferlab.serve.app import create_app

    url, path = graph_server
    assert httpx.get(f"{url}/api/health").json() == {"status": "ok", "model": "fast.onnx", "explains_with": "occlusion"}
    answer = post(url, PHOTOS[1], explain=False).json()
    [face] = ferlab.load(path).detect(PHOTOS[1])
    assert [(f["label"], f["box"]) for f in answer["faces"]] == [(face.label, face.box.to_list())]
    assert "explanation" not in answer["faces"][0]
    explained = post(url, PHOTOS[1], explain=True).json()["faces"][0]
    assert explained["explained_by"] == "occlusion" and explained["label"] == face.label
    heat, crop = decoded(explained["explanation"]), decoded(answer["faces"][0]["crop"])
    assert heat.shape == (96, 96, 3) and np.abs(heat.astype(int) - crop[..., None].astype(int)).mean() > 5
    from tests.serve.test_webcam import jpeg
    from tests.test_video import two_faces_scene

    frame = httpx.post(f"{url}/api/frame", content=jpeg(two_faces_scene(0)), timeout=60).json()  # the camera's path
    assert len(frame["faces"]) == 1 and frame["faces"][0]["label"] in EMOTIONS
    with pytest.raises(FerlabError, match=f"--layer 10: picks Grad-CAM's conv layer, and {path} is explained by occlusion"):
        create_app(load_model(path, graphs=True), "fast.onnx", layer="10")  # before it serves


@pytest.mark.browser
def test_a_graphs_page_offers_occlusion_and_shows_the_faces(graph_server):
    url, _ = graph_server
    with chromium_page(1200, 900) as (page, errors):
        page.goto(url + "/")
        assert page.is_visible("#explain") and page.is_checked("#explain")
        assert page.inner_text("#explain-option").strip() == "show Occlusion"
        page.set_input_files("#file", str(PHOTOS[0]))
        page.wait_for_selector("#status[data-faces]", timeout=60_000)
        status = page.inner_text("#status")
    assert status == "1 face found." and errors == []


def test_a_policy_the_model_cannot_take_stops_the_server_before_it_serves():
    """``cnn`` takes whole 48x48 faces: ten-crop's windows would fail every request with a 500."""
    from ferlab.checkpoint import LoadedModel
    from ferlab.config import TrainConfig
    from ferlab.data.normalize import Normalization
    from ferlab.errors import FerlabError
    from ferlab.models import build_model
    from ferlab.serve.app import create_app

    loaded = LoadedModel(build_model("cnn").eval(), Normalization(), TrainConfig(model="cnn"), {})
    with pytest.raises(FerlabError, match="cnn"):
        create_app(loaded, "cnn", tta="ten-crop")
    assert create_app(loaded, "cnn", tta="flip-zoom") is not None


def test_an_animated_photo_is_answered_for_its_first_frame_with_a_note(server, tmp_path):
    gif, still = animated_photo(tmp_path)
    animated, first = post(server, gif, explain=False).json(), post(server, still, explain=False).json()
    assert animated["note"].startswith("first frame only") and first["note"] is None
    assert [f["label"] for f in animated["faces"]] == [f["label"] for f in first["faces"]]


def test_a_smallest_face_over_the_photo_is_answered_with_a_note_saying_so():
    from ferlab.checkpoint import load_model
    from ferlab.faces import Detection
    from ferlab.serve.app import predict_bytes

    data = PHOTOS[0].read_bytes()
    width, height = Image.open(PHOTOS[0]).size
    answer = predict_bytes(load_model("default-fast"), data, PHOTOS[0].name, explain=False, detection=Detection(min_face=5000))
    assert answer["faces"] == [] and answer["note"] == f"--min-face 5000 px is over this {width}x{height} picture's shorter side"
