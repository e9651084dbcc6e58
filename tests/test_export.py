"""``ferlab export``: the format follows the suffix; the ONNX file runs in onnxruntime with the
normalisation inside and matches PyTorch (issue 12, item 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ferlab.checkpoint import load_model
from ferlab.cli import main
from ferlab.evaluation import infer
from ferlab.labels import EMOTIONS

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    assert main(["export", "default", "-o", str(path)]) == 0
    return path


def test_onnx_matches_pytorch_on_500_real_faces(onnx_file, sample_faces):
    faces = torch.cat([sample_faces.images, sample_faces.images[:80].flip(-1)])  # 420 faces + 80 mirrored
    assert faces.shape == (500, 48, 48)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    logits, probabilities = session.run(None, {"faces": faces.numpy()})
    loaded = load_model("default")
    reference = infer(loaded.model, faces, loaded.normalization)  # PyTorch, float32 like the graph
    assert np.abs(logits - reference.numpy()).max() <= 1e-3
    assert (logits.argmax(1) == reference.argmax(1).numpy()).all()
    np.testing.assert_allclose(probabilities, reference.softmax(1).numpy(), atol=1e-4)


def test_onnx_has_a_dynamic_batch_and_states_its_classes(onnx_file):
    import onnx

    model = onnx.load(str(onnx_file))
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["classes"].split(",") == list(EMOTIONS)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    [face_input] = session.get_inputs()
    assert face_input.name == "faces" and face_input.type == "tensor(uint8)" and face_input.shape[1:] == [48, 48]
    for batch in (1, 3):
        logits, probabilities = session.run(None, {"faces": np.zeros((batch, 48, 48), np.uint8)})
        assert logits.shape == probabilities.shape == (batch, 7)


def test_the_format_follows_the_suffix(tmp_path, capsys):
    assert main(["export", "default", "-o", str(tmp_path / "model.tflite")]) == 2
    assert "unknown export format '.tflite'; name the file *.pt or *.onnx" in capsys.readouterr().err
    assert not (tmp_path / "model.tflite").exists()
    assert main(["export", "default", "-o", str(tmp_path / "small.pt")]) == 0
    assert load_model(tmp_path / "small.pt").config.model == load_model("default").config.model
