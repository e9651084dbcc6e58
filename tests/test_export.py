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
    temperature = loaded.temperature  # calibrated as every probability ferlab gives
    assert temperature != 1.0
    np.testing.assert_allclose(probabilities, (reference / temperature).softmax(1).numpy(), atol=1e-4)


def test_onnx_has_a_dynamic_batch_and_states_its_classes(onnx_file):
    import onnx

    model = onnx.load(str(onnx_file))
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["classes"].split(",") == list(EMOTIONS)
    assert float(metadata["temperature"]) == load_model("default").temperature
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


def test_int8_export_keeps_the_contract_and_states_what_it_cost(tmp_path, capsys, sample_archive, sample_faces):
    """`--int8`: the same uint8-in, logits-and-probabilities-out graph, quantised; the check printed
    and stored in the file is recomputed here from both graphs' own answers on PublicTest."""
    import onnx

    from ferlab.export import onnx_labels

    floating, quantized = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    assert main(["export", "default-fast", "-o", str(floating)]) == 0
    assert main(["export", "default-fast", "-o", str(quantized), "--int8", "--data", str(sample_archive),
                 "--calibration-faces", "128"]) == 0
    out = capsys.readouterr().out
    held_out = sample_faces.split("val")
    first, second = onnx_labels(floating, held_out.images), onnx_labels(quantized, held_out.images)
    float_accuracy, int8_accuracy = (100 * float((labels == held_out.labels).float().mean()) for labels in (first, second))
    agreement = 100 * float((first == second).float().mean())
    described = (f"PublicTest (fer2013-sample.tar.gz): {int8_accuracy:.2f}% int8 against {float_accuracy:.2f}% "
                 f"float32, the same label on {agreement:.1f}% of 70 faces")
    assert described in out and agreement >= 90 and abs(int8_accuracy - float_accuracy) <= 5
    model = onnx.load(str(quantized))
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["int8_check"] == described and "calibrated on 128 Training faces" in metadata["quantization"]
    assert metadata["classes"].split(",") == list(EMOTIONS)
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)
    assert quantized.stat().st_size < 0.6 * floating.stat().st_size  # 8-bit weights, not 32
    session = ort.InferenceSession(str(quantized), providers=["CPUExecutionProvider"])
    [face_input] = session.get_inputs()
    assert face_input.name == "faces" and face_input.type == "tensor(uint8)"
    logits, probabilities = session.run(None, {"faces": sample_faces.images[:3].numpy()})
    assert logits.shape == (3, 7) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float.onnx", "int8.onnx"]  # no temporary left


def test_int8_export_refuses_what_it_cannot_write_or_check(tmp_path, capsys, sample_archive):
    assert main(["export", "default", "-o", str(tmp_path / "model.pt"), "--int8"]) == 2
    assert capsys.readouterr().err.strip() == f"ferlab: error: {tmp_path / 'model.pt'}: --int8 writes an ONNX graph; name the file *.onnx"
    unlabelled = tmp_path / "test.csv"  # the course's test file: no labels to check against
    unlabelled.write_text("id,feature\n1," + " ".join(["9"] * 2304) + "\n")
    assert main(["export", "default", "-o", str(tmp_path / "m.onnx"), "--int8", "--data", str(unlabelled)]) == 2
    assert "int8 export needs labelled faces with Training and PublicTest" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.csv"]


@pytest.mark.parametrize("option", [["--calibration-faces", "100"], ["--data", "fer2013.csv"], ["--skip-bad-rows"]])
def test_an_option_of_int8_alone_given_to_a_float_export_is_one_line(option, tmp_path, capsys):
    """A float export reads no faces: --calibration-faces or --data were passed over without a word."""
    for suffix in (".pt", ".onnx"):
        assert main(["export", "default-fast", "-o", str(tmp_path / f"m{suffix}"), *option]) == 2
        assert capsys.readouterr().err.strip() == (f"ferlab: error: {option[0]}: only --int8 reads faces (to calibrate "
                                                   "and check the 8-bit graph); a float export reads none")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_int8_export_leaves_nothing_beside_the_output(tmp_path, monkeypatch, sample_faces):
    import ferlab.export as export
    from ferlab.checkpoint import read_checkpoint, resolve_checkpoint

    def broken(*args):
        raise RuntimeError("onnxruntime failed")

    monkeypatch.setattr(export, "compare_graphs", broken)  # after the quantised file is written
    with pytest.raises(RuntimeError, match="onnxruntime failed"):
        export.export_int8(read_checkpoint(resolve_checkpoint("default-fast")), tmp_path / "m.onnx", sample_faces,
                           calibration_faces=16)
    assert list(tmp_path.iterdir()) == []
