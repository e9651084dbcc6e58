"""Shared fixtures. The real data lives in ../shared/data/fer2013 (never copied into the repo);
generated fixtures go to pytest's tmp_path."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FERLAB_SHARED_DATA", REPO.parent / "shared" / "data" / "fer2013"))
SAMPLE_ARCHIVE = SHARED_DATA / "fer2013-sample.tar.gz"
FULL_ARCHIVE = SHARED_DATA / "fer2013-images.tar.xz"


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory, monkeypatch):
    """Every test gets its own face cache, no $FERLAB_DATA, and fixed seeds."""
    monkeypatch.setenv("FERLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("FERLAB_DATA", raising=False)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def sample_archive() -> Path:
    if not SAMPLE_ARCHIVE.exists():
        pytest.skip(f"{SAMPLE_ARCHIVE} not found")
    return SAMPLE_ARCHIVE


@pytest.fixture(scope="session")
def sample_faces(sample_archive):
    from ferlab.data import load_faces

    return load_faces(sample_archive, use_cache=False)


@pytest.fixture(scope="session")
def fast_graph(tmp_path_factory) -> Path:
    """``default-fast`` exported as an ONNX graph (float32), for the tests of graphs run by ferlab."""
    pytest.importorskip("onnxruntime")
    from ferlab.cli import main

    path = tmp_path_factory.mktemp("graph") / "fast.onnx"
    assert main(["export", "default-fast", "-o", str(path)]) == 0
    return path


def pixels_text(values) -> str:
    return " ".join(str(int(v)) for v in values)


def random_face(generator: np.random.Generator) -> np.ndarray:
    return generator.integers(0, 256, size=(48, 48), dtype=np.int64)
