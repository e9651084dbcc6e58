"""A small FastAPI app: one static page (no external resources) and one JSON endpoint.

    GET  /              the page: pick or drop a photo, see faces, probability bars, Grad-CAM
                        (occlusion for an ONNX graph, an ensemble, a dnn); or the camera: live
                        boxes, labels, probability bars and the same maps over the video
    POST /api/predict   multipart field ``file`` (+ ``explain=true``, a field or in the query) -> faces as JSON (with
                        explain, each face's ``explanation`` PNG and ``explained_by``); at most
                        20 MiB (a larger request is refused before it is read), 4 photos at once
    POST /api/frame     one camera frame (a JPEG or PNG body, at most 2 MiB and 1920x1080) -> faces
                        as JSON, without crops (``?explain=true``: each face's heat map and the
                        region it covers); one frame at a time, at most 30 a second
                        (``next_in_ms``: when the server takes the next one)
    GET  /api/health    {"status": "ok", "model": ..., "explains_with": "gradcam" or "occlusion"}

Every error, whatever raised it (a bad upload, a missing field, an unknown route, a bug), has one
shape: ``{"error": "one line"}`` with the HTTP status. Requests share one model in eval mode; nothing per request touches it (no hooks, no mode
switches), so concurrent requests get the same answers as sequential ones.
"""

from __future__ import annotations

import base64
import html
import io
import math
import threading
import time
from collections.abc import Callable
from importlib import resources

import numpy as np
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from PIL import Image

from ferlab.checkpoint import LoadedModel
from ferlab.explain import get_spec
from ferlab.explain.postprocess import OVERLAY_ALPHA, overlay
from ferlab.faces import Detection, PhotoError, open_photo, read_photo
from ferlab.photos import analyze, annotate, heat_image, photo_note, photo_record

MAX_UPLOAD_BYTES = 20 * 2**20  # 20 MiB
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 2**16  # a request: one photo and its form's fields and boundaries
MAX_FRAME_BYTES = 2 * 2**20    # a camera frame: 2 MiB of JPEG or PNG ...
MAX_FRAME_PIXELS = 1920 * 1080  # ... and at most full HD (the page sends 640x480)
PHOTO_SLOTS = 4               # photos analysed at once; more wait their turn (a 39 MP photo took 0.35 GiB
                              # and 7 s: 40 at once, the thread pool's size, would take 14 GiB)
MAX_FRAME_RATE = 30            # frames a second the server takes, over all clients
LIVE_MIN_FACE = 80             # pixels: a face in a camera frame is large, and dlib's HOG finds 80 px without upsampling
                               # (serve --min-face sets both minimums)


class FrameGate:
    """One camera frame at a time, and at most MAX_FRAME_RATE a second: a client sends its next
    frame when the last is answered (the server's pace) and ``wait`` seconds have passed since;
    more gets 429, not a queue."""

    def __init__(self, rate: float = MAX_FRAME_RATE, clock: Callable[[], float] = time.monotonic):
        self.lock, self.interval, self.clock, self.last = threading.Lock(), 1.0 / rate, clock, -math.inf

    def enter(self) -> str | None:
        """None if this frame may run now (the caller then calls ``leave``), else why not."""
        if not self.lock.acquire(blocking=False):
            return "busy with another frame: send the next one when this one is answered"
        now = self.clock()
        if now - self.last < self.interval:
            self.lock.release()
            return f"over {1 / self.interval:g} frames a second"
        self.last = now
        return None

    def leave(self) -> None:
        self.lock.release()

    def wait(self) -> float:
        """Seconds from now until the next frame is taken. A client that waits this long after the
        answer is never refused for the rate: its frame cannot arrive before the answer left."""
        return max(0.0, self.last + self.interval - self.clock())


def frame_answer(loaded: LoadedModel, data: bytes, tta: str, detection: Detection, explain: bool = False,
                 layer: str | None = None) -> dict:
    """Faces of one camera frame: boxes, scores, labels and probabilities; no crops or annotated
    frame, since the page draws over the live video. With ``explain``, each face's 48x48 heat map
    (``heatmap``, a PNG to lay over the frame; photos get ``explanation``, map and face blended)
    and the region of the frame it belongs over (``seen``)."""
    started = time.perf_counter()
    rgb = read_photo(data, name="frame", max_pixels=MAX_FRAME_PIXELS)
    faces = analyze(loaded, rgb, explain=explain, tta=tta, mode="detect", layer=layer, detection=detection)
    entries = [face.to_dict() for face in faces]
    for face, entry in zip(faces, entries):
        if face.cam is not None:
            entry.update(explained_by=loaded.overlay_method, heatmap=png_data_uri(heat_image(face.cam)),
                         seen=face.seen.to_list())
    return {"width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "faces": entries,
            "ms": round(1000 * (time.perf_counter() - started), 1)}


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None once it passes ``limit`` bytes (the rest is not read)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def png_data_uri(image: Image.Image | np.ndarray) -> str:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def predict_bytes(loaded: LoadedModel, data: bytes, name: str, explain: bool, tta: str = "none",
                  layer: str | None = None, detection: Detection = Detection()) -> dict:
    """The JSON answer for one uploaded photo (raises PhotoError for a bad file)."""
    photo = open_photo(data, name=name)
    rgb = photo.rgb
    faces = analyze(loaded, rgb, explain=explain, tta=tta, layer=layer, detection=detection)
    record = photo_record(name, rgb, faces, photo_note(photo, faces, detection))
    for face, entry in zip(faces, record["faces"]):
        entry["crop"] = png_data_uri(np.asarray(Image.fromarray(face.crop).resize((96, 96), Image.Resampling.NEAREST)))
        if face.cam is not None:
            blended = Image.fromarray(overlay(face.crop, face.cam)).resize((96, 96), Image.Resampling.BILINEAR)
            entry["explained_by"], entry["explanation"] = loaded.overlay_method, png_data_uri(np.asarray(blended))
    record["annotated"] = png_data_uri(annotate(rgb, faces))
    return record


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def describe_validation(error: RequestValidationError) -> str:
    """FastAPI's list of problems as one line: ``file: Field required``."""
    problems = [f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', 'invalid')}"
                for e in error.errors()]
    problems = [f"{problem.split('.')[0]}: a text field, not a file; send the photo as a file (curl -F file=@photo.jpg)"
                if "Expected UploadFile" in problem else problem for problem in problems]
    return "; ".join(dict.fromkeys(problems)) or "invalid request"


QUERY_PARAMETERS = ("explain",)  # what /api/predict and /api/frame take in their query


def unknown_query(request: Request) -> str | None:
    """Why a request's query cannot be answered as asked, or None: a parameter the endpoint does
    not take (``?explian=true``) was passed over, and the answer came without its maps."""
    unknown = sorted(set(request.query_params) - set(QUERY_PARAMETERS))
    if not unknown:
        return None
    return (f"unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"{request.url.path} takes: {', '.join(QUERY_PARAMETERS)}")


def one_explain(form: bool | None, query: bool | None) -> bool:
    """``explain`` from the form (``-F explain=true``) or the query (``?explain=true``, as
    /api/frame takes it); both, saying different things, is a PhotoError."""
    if form is not None and query is not None and form != query:
        raise PhotoError(f"explain: the form says {str(form).lower()} and the query {str(query).lower()}; give one")
    return bool(form if form is not None else query)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is refused (413) before it is read
    where its Content-Length says so, or as soon as it passes the limit where it comes in chunks.
    Starlette spools an uploaded file whole to a temporary file before a route sees it: without
    this, one request of many GiB would fill the disk before being refused."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await error_response(413, self.refusal())(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, self.refusal())  # FastAPI passes it on from the form's parsing
            return message

        await self.app(scope, counted, send)

    def refusal(self) -> str:
        return f"request: larger than {MAX_UPLOAD_BYTES // 2**20} MiB, the most a photo may be"


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, describe_validation(error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        return error_response(500, f"internal error ({error.__class__.__name__}); the server keeps running")


def create_app(loaded: LoadedModel, model_name: str = "default", tta: str = "none", *, layer: str | None = None,
               detection: Detection = Detection(), frame_rate: float = MAX_FRAME_RATE,
               live_min_face: float = LIVE_MIN_FACE) -> FastAPI:
    """The page and its JSON endpoints. Photos are searched with ``detection``; camera frames with
    its detector and ``live_min_face`` (pixels, or under 1 a fraction of the frame's shorter side)."""
    loaded.check_tta(tta)  # before serving: a policy the model cannot take would fail every request
    app = FastAPI(title="ferlab", docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit)
    add_error_handlers(app)
    options = loaded.overlay_options(layer)  # a layer occlusion cannot take: before serving
    method = loaded.overlay_method  # Grad-CAM, or occlusion for an ONNX graph, an ensemble, a dnn
    page = resources.files("ferlab.serve").joinpath("page.html").read_text(encoding="utf-8")
    page = page.replace("__EXPLANATION__", html.escape(get_spec(method).title)).replace("__OVERLAY_ALPHA__", str(OVERLAY_ALPHA))
    page = page.replace("__MAX_UPLOAD_BYTES__", str(MAX_UPLOAD_BYTES))

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok", "model": model_name, "explains_with": method}

    gate, photo_slots = FrameGate(frame_rate), threading.BoundedSemaphore(PHOTO_SLOTS)
    live_detection = Detection(detection.detector, live_min_face)

    @app.post("/api/frame")
    async def frame(request: Request, explain: bool = False):
        if problem := unknown_query(request):
            return error_response(400, problem)
        data = await read_body(request, MAX_FRAME_BYTES)
        if data is None:
            return error_response(413, f"frame: larger than {MAX_FRAME_BYTES // 2**20} MiB")
        refusal = gate.enter()
        if refusal:
            return error_response(429, refusal)
        try:
            answer = await run_in_threadpool(frame_answer, loaded, data, tta, live_detection, explain, options.get("layer"))
            return answer | {"next_in_ms": math.ceil(1000 * gate.wait())}
        except PhotoError as error:
            return error_response(400, str(error))
        finally:
            gate.leave()

    @app.post("/api/predict")
    def predict(request: Request, file: list[UploadFile] = File(...), explain: bool | None = Form(None),
                explain_in_query: bool | None = Query(None, alias="explain")):
        if problem := unknown_query(request):
            return error_response(400, problem)
        if len(file) > 1:  # answering the last alone would drop the others without a word
            names = ", ".join(upload.filename or "upload" for upload in file[:3]) + (", ..." if len(file) > 3 else "")
            return error_response(400, f"{len(file)} files ({names}): send one photo per request")
        [file] = file
        data = file.file.read(MAX_UPLOAD_BYTES + 1)
        name = file.filename or "upload"
        if len(data) > MAX_UPLOAD_BYTES:
            return error_response(413, f"{name}: file is larger than {MAX_UPLOAD_BYTES // 2**20} MiB")
        try:
            explain = one_explain(explain, explain_in_query)
            with photo_slots:
                return predict_bytes(loaded, data, name, explain, tta, options.get("layer"), detection)
        except PhotoError as error:
            return error_response(400, str(error))

    return app
