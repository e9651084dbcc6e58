"""The serve tests' shared fixture: the app on a real server, on a free port of this machine."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from ferlab.checkpoint import load_model
from ferlab.serve.app import create_app


@contextlib.contextmanager
def serving(app):
    """``app`` served by uvicorn in a thread on a free port of 127.0.0.1; yields its URL once
    /api/health answers, and stops it afterwards (also used by benchmarks/webcam.py)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
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
    try:
        yield url
    finally:
        instance.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server():
    with serving(create_app(load_model("default"))) as url:
        yield url
