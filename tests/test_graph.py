"""ONNX graphs of ``ferlab export`` run by the commands that only need answers (``ferlab.graph``):
their answers are the graph's own, through the one inference path; what a graph cannot do, and
graphs that are not ferlab's, are one line naming the file."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch

import ferlab
from ferlab.checkpoint import load_model
from ferlab.cli import main
from ferlab.errors import FerlabError
from ferlab.labels import EMOTIONS

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture
def graph(fast_graph):
    return fast_graph


def session_outputs(path, faces: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return tuple(session.run(["logits", "probabilities"], {"faces": faces.numpy()}))


def test_the_inference_path_gives_the_graphs_own_answers(graph, sample_faces):
    faces = sample_faces.images  # 420 real faces, one batch either way
    logits, _ = session_outputs(graph, faces)
    mirrored, _ = session_outputs(graph, faces.flip(-1))
    loaded = load_model(graph, graphs=True)
    np.testing.assert_array_equal(loaded.logits(faces).numpy(), logits)
    np.testing.assert_allclose(loaded.logits(faces, tta="flip").numpy(), (logits + mirrored) / 2, rtol=0, atol=1e-6)


def test_graphs_answering_in_threads_give_pytorch_its_threads_back(graph, sample_faces):
    """While a graph answers PyTorch runs on one thread (its idle threads would spin on the cores
    onnxruntime uses); however the threads interleave, the count is restored, and each thread gets
    the answers one thread alone gets."""
    from concurrent.futures import ThreadPoolExecutor

    loaded = load_model(graph, graphs=True)
    alone = loaded.logits(sample_faces.images[:64])
    before = torch.get_num_threads()
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: loaded.logits(sample_faces.images[:64]), range(8)))
    with ThreadPoolExecutor(1) as pool:
        assert torch.get_num_threads() == pool.submit(torch.get_num_threads).result() == before
    assert all(torch.equal(answer, alone) for answer in answers)


def test_zoomed_views_stay_within_rounding_of_pytorchs(graph, sample_faces):
    """A zoomed view is rounded to whole gray levels before the graph: the labels stay PyTorch's
    float32 ones on nearly every face."""
    from ferlab.evaluation import infer

    pytorch = load_model("default-fast")
    reference = infer(pytorch.model, sample_faces.images, pytorch.normalization, tta="flip-zoom")  # float32
    answers = load_model(graph, graphs=True).logits(sample_faces.images, tta="flip-zoom")
    assert float((answers.argmax(1) == reference.argmax(1)).float().mean()) >= 0.97
    assert float((answers - reference).abs().max()) < 0.5


def test_evaluate_and_predict_report_what_the_graph_answers(graph, sample_archive, sample_faces, tmp_path):
    test = sample_faces.split("test")
    logits, probabilities = session_outputs(graph, test.images)
    assert main(["evaluate", str(graph), "--data", str(sample_archive), "--split", "test", "-o", str(tmp_path / "eval")]) == 0
    evaluation = json.loads((tmp_path / "eval" / "eval-test.json").read_text())
    assert evaluation["accuracy"] == pytest.approx(float((logits.argmax(1) == test.labels.numpy()).mean()))
    output = tmp_path / "labels.csv"
    assert main(["predict", str(graph), str(sample_archive), "--split", "test", "--proba", "-o", str(output)]) == 0
    rows = list(csv.DictReader(output.open()))
    assert [row["id"] for row in rows] == list(test.ids)
    assert [int(row["label"]) for row in rows] == logits.argmax(1).tolist()
    written = np.array([[float(row[name]) for name in EMOTIONS] for row in rows])
    np.testing.assert_allclose(written, probabilities, atol=1e-4)  # calibrated alike: the graph's own softmax(logits / T)


def test_an_int8_graph_is_evaluated_as_its_export_checked_it(sample_archive, tmp_path, capsys):
    """The int8 check printed when the file is written is PublicTest's accuracy; evaluate gives it."""
    path = tmp_path / "int8.onnx"
    assert main(["export", "default-fast", "-o", str(path), "--int8", "--data", str(sample_archive),
                 "--calibration-faces", "128"]) == 0
    written = capsys.readouterr().out
    checked = written.split("): ")[-1].split("% int8")[0]
    assert main(["evaluate", str(path), "--data", str(sample_archive), "--split", "val", "-o", str(tmp_path / "eval")]) == 0
    assert f"{100 * json.loads((tmp_path / 'eval' / 'eval-val.json').read_text())['accuracy']:.2f}" == checked
    capsys.readouterr()
    assert main(["summary", str(path)]) == 0  # the graph's contract, precision and the check it carries
    summary = capsys.readouterr().out
    assert f"{path}: ONNX graph of fastnet, written by ferlab export" in summary
    assert "precision: onnxruntime static int8 (QDQ, per-channel weights), activations calibrated on 128 Training faces" in summary
    assert f"  int8 check: {written.split('; ')[-1].strip()}" in summary and "QuantizeLinear" in summary


def test_summary_of_a_float_graph_counts_its_operators(graph, capsys):
    import onnx

    assert main(["summary", str(graph)]) == 0
    out = capsys.readouterr().out
    nodes = onnx.load(str(graph)).graph.node
    assert f"  {len(nodes)} operators: Conv {sum(n.op_type == 'Conv' for n in nodes)}, " in out
    assert "precision: float32" in out and "int8 check" not in out
    assert f"calibration temperature {load_model('default-fast').temperature:.4g}" in out


def test_the_api_and_photos_take_a_graph_and_explain_it_without_gradients(graph, tmp_path, capsys):
    from ferlab.explain.postprocess import normalize, relu

    model, checkpoint = ferlab.load(graph), ferlab.load("default-fast")
    hopper = ferlab.demo_photos()[1]
    [face] = model.detect(hopper)
    assert model.predict(face.crop).labels == [face.label]
    assert "architecture='fastnet'" in repr(model)
    with pytest.raises(FerlabError, match=f"Grad-CAM needs gradients and {graph} is an ONNX graph .*: lime, occlusion$"):
        model.explain(face.crop)
    # Hidden pixels take the training mean the export recorded, so the graph's maps are its checkpoint's.
    assert load_model(graph, graphs=True).mean_gray == pytest.approx(load_model("default-fast").normalization.mean * 255,
                                                                      abs=1e-4)
    occluded = model.explain(face.crop, method="occlusion")
    np.testing.assert_allclose(occluded, checkpoint.explain(face.crop, method="occlusion", mixed_precision=False),
                               rtol=0, atol=2e-3)
    assert np.abs(occluded).max() > 0.05
    # Photos lay occlusion over a graph's faces, where a checkpoint's get Grad-CAM.
    [explained] = model.detect(hopper, explain=True)
    np.testing.assert_allclose(explained.cam, normalize(relu(torch.from_numpy(occluded)[:, None]))[0, 0].numpy(), atol=1e-6)
    assert model.detect(np.full((480, 640, 3), 128, np.uint8), explain=True) == []  # no face: nothing to explain
    with pytest.raises(FerlabError, match=f"--layer last: picks Grad-CAM's conv layer, and {graph} is explained by occlusion"):
        model.detect(hopper, explain=True, layer="last")
    assert main(["photo", "--demo", "--model", str(graph), "--explain", "-o", str(tmp_path / "explained")]) == 0
    results = json.loads((tmp_path / "explained" / "results.json").read_text())
    assert len(results["photos"]) == 2 and results["explained_by"] == "occlusion"
    assert main(["photo", "--demo", "--model", str(graph), "--explain", "--layer", "3", "-o", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip().endswith("is explained by occlusion (no gradients or no single conv layer)")


def test_explain_draws_a_graph_with_the_gradient_free_methods_only(graph, sample_archive, tmp_path, capsys):
    from PIL import Image

    assert main(["explain", str(graph), "--method", "all", "--index", "0", "--data", str(sample_archive),
                 "-o", str(tmp_path / "all.png")]) == 0
    assert "left out" not in capsys.readouterr().out  # all: the methods that apply, LIME and occlusion
    with Image.open(tmp_path / "all.png") as image:  # the face and two panels
        assert 2 * image.height < image.width < 4 * image.height
    for method in ("lime", "occlusion"):
        output = tmp_path / f"{method}.png"
        assert main(["explain", str(graph), "--method", method, "--index", "0", "1", "--data", str(sample_archive),
                     "-o", str(output)]) == 0
        assert output.stat().st_size > 5000
    assert main(["explain", str(graph), "--method", "gradcam", "--index", "0", "--data", str(sample_archive)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [f"ferlab: error: Grad-CAM needs gradients and {graph} is an ONNX graph that gives "
                                "answers only; gradient-free methods explain it: lime, occlusion"]


def test_the_report_of_a_graph_has_its_metrics_and_gradient_free_explanations(graph, sample_archive, sample_faces,
                                                                               tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(graph), "--data", str(sample_archive), "--lime-samples", "60", "--quiet",
                 "-o", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "An ONNX graph of <code>ferlab export</code>" in page and "ONNX graph of fastnet" in page
    assert "Saliency (|gradient|), Grad-CAM, HiResCAM, Guided Grad-CAM: need gradients" in page
    assert not (out / "filters.png").exists() and (out / "explanations.png").exists()
    evaluation = json.loads((out / "eval-test.json").read_text())
    loaded, faces = load_model(graph, graphs=True), sample_faces.split("test")
    labels = loaded.logits(faces.images).argmax(1)
    assert evaluation["accuracy"] == int((labels == faces.labels).sum()) / len(faces)
    trust = json.loads((out / "trust.json").read_text())  # strict JSON: no NaN
    assert [row["method"] for row in trust["methods"]] == ["LIME", "Occlusion"]
    assert trust["fill"] == "the training-set mean gray level (pixel value 131.0 of 255)"
    for row in trust["methods"]:  # checked against the graph with its weights redrawn: the maps change
        assert row["checked"] and 0 <= row["rho"] < 0.5 and row["passes"]
        assert row["verdict"].startswith(f"passes the randomisation check (ρ={row['rho']:.2f})")
        assert 0 <= row["deletion"] <= 1 and 0 <= row["insertion"] <= 1
    assert main(["report", str(graph), "--data", str(sample_archive), "--layer", "3", "-o", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"--layer 3: {graph} is an ONNX graph, with no conv layer to pick; "
                                                    "its explanations (LIME, occlusion) take none")


@pytest.mark.parametrize("argv", [
    ["calibrate", "{graph}", "-o", "{tmp}/calibrated.pt"],
    ["export", "{graph}", "-o", "{tmp}/again.onnx"],
    ["train", "--init", "{graph}", "--epochs", "1", "--data", "{sample}"],
])
def test_commands_that_need_the_pytorch_model_refuse_a_graph_in_one_line(graph, sample_archive, tmp_path, capsys, argv):
    argv = [part.format(graph=graph, tmp=tmp_path, sample=sample_archive) for part in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(graph) in err and "ONNX graph gives answers only" in err


def test_an_ensemble_evaluates_graphs_beside_checkpoints_but_writes_none(graph, sample_archive, sample_faces, tmp_path,
                                                                         capsys):
    out = tmp_path / "ensemble"
    assert main(["ensemble", str(graph), "default", "--data", str(sample_archive), "--out", str(out)]) == 0
    test = sample_faces.split("test")
    members = [load_model(graph, graphs=True), load_model("default")]
    combined = sum(member.probabilities(test.images) for member in members) / 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] == int((combined.argmax(1) == test.labels).sum()) / len(test)
    assert metrics["members"][str(graph)]["test_accuracy"] == \
        int((members[0].logits(test.images).argmax(1) == test.labels).sum()) / len(test)
    written = tmp_path / "ensemble.pt"
    assert main(["ensemble", "default", str(graph), "-o", str(written), "--data", str(sample_archive),
                 "--out", str(tmp_path / "again")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{graph}: -o writes the members' weights into one model, and an ONNX "
                                                    "graph's cannot be read out; give the checkpoints it was exported "
                                                    "from (the evaluation takes graphs)")
    assert not written.exists() and not (tmp_path / "again").exists()


def test_what_a_graph_cannot_do_at_inference_is_one_line(graph, sample_archive, tmp_path, capsys):
    assert main(["evaluate", str(graph), "--data", str(sample_archive), "--tta", "ten-crop", "-o", str(tmp_path / "a")]) == 2
    assert "an ONNX graph takes whole 48x48 faces; ten-crop needs the checkpoint" in capsys.readouterr().err
    for argv in (["serve", "--model", str(graph), "--tta", "ten-crop", "--port", "8765"],  # before serving
                 ["photo", "--demo", "--model", str(graph), "--tta", "ten-crop", "-o", str(tmp_path / "c")]):
        assert main(argv) == 2
        assert capsys.readouterr().err.strip() == f"ferlab: error: {graph}: an ONNX graph takes whole 48x48 faces; " \
                                                  "ten-crop needs the checkpoint it was exported from"
    with pytest.raises(FerlabError, match="ten-crop needs the checkpoint"):
        ferlab.load(graph, tta="ten-crop")
    assert main(["evaluate", str(graph), "--device", "cuda", "-o", str(tmp_path / "b")]) == 2
    assert f"{graph}: an ONNX graph runs on the CPU here (onnxruntime); drop --device cuda" in capsys.readouterr().err


def ferlab_like(nodes, output_shape, metadata=None, elem_type=None):
    """A small graph with ferlab's input and metadata around ``nodes`` (which write ``logits``)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "hostile",
                              [helper.make_tensor_value_info("faces", elem_type or TensorProto.UINT8, ["batch", 48, 48])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, output_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    helper.set_model_props(model, {"producer": "ferlab", "classes": ",".join(EMOTIONS), "temperature": "1.0",
                                   **(metadata or {})})
    return model


def casts_then(*nodes):
    from onnx import TensorProto, helper

    return [helper.make_node("Cast", ["faces"], ["x"], to=TensorProto.FLOAT), *nodes]


def hostile_graphs(graph_bytes: bytes):
    """name -> (bytes of the file, what the error says)."""
    from onnx import TensorProto, helper, numpy_helper

    def serialized(model):
        return model.SerializeToString()

    mean_rows = casts_then(helper.make_node("ReduceMean", ["x", "axes"], ["logits"], keepdims=0))
    axes = numpy_helper.from_array(np.array([2], np.int64), "axes")
    forty_eight = ferlab_like(mean_rows, ["batch", 48])
    forty_eight.graph.initializer.append(axes)
    starts, ends, slice_axes = (numpy_helper.from_array(np.array(v, np.int64), n)
                                for v, n in (([0, 0], "starts"), ([1, 7], "ends"), ([1, 2], "slice_axes")))
    nan = ferlab_like(casts_then(helper.make_node("Slice", ["x", "starts", "ends", "slice_axes"], ["row"]),
                                 helper.make_node("Squeeze", ["row", "one"], ["s"]),
                                 helper.make_node("Div", ["s", "s"], ["logits"])), ["batch", 7])
    nan.graph.initializer.extend([starts, ends, slice_axes, numpy_helper.from_array(np.array([1], np.int64), "one")])
    other_producer = ferlab_like(mean_rows, ["batch", 48], {"producer": "pytorch"})
    other_classes = ferlab_like(mean_rows, ["batch", 48], {"classes": ",".join(sorted(EMOTIONS))})
    float_input = ferlab_like([helper.make_node("ReduceMean", ["faces", "axes"], ["logits"], keepdims=0)], ["batch", 48],
                              elem_type=TensorProto.FLOAT)
    float_input.graph.initializer.append(axes)
    bad_temperature = ferlab_like(mean_rows, ["batch", 48], {"temperature": "nan"})
    bad_gray = ferlab_like(mean_rows, ["batch", 48], {"mean_gray": "-inf"})
    external = onnx.load_model_from_string(graph_bytes)
    weight = next(t for t in external.graph.initializer if t.dims)
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="/etc/passwd")
    return {
        "empty": (b"", "an empty file, not an ONNX graph"),
        "truncated": (graph_bytes[: len(graph_bytes) // 2], "not an ONNX graph (truncated, damaged or another kind of file)"),
        "text": (b"this is not a graph\n" * 50, "not an ONNX graph (truncated, damaged or another kind of file)"),
        "other producer": (serialized(other_producer), "not a graph that ferlab export wrote"),
        "other classes": (serialized(other_classes), "classes ['angry', 'disgust', 'fear', 'happy', 'neutral'"),
        "float input": (serialized(float_input), "expected one input 'faces', uint8 (batch, 48, 48)"),
        "bad temperature": (serialized(bad_temperature), "calibration temperature 'nan' must be a positive finite number"),
        "bad mean gray": (serialized(bad_gray), "mean gray level '-inf' must be a pixel value, 0..255"),
        "external data": (serialized(external), "its weights point at external data files"),
        "48 logits": (serialized(forty_eight), "its logits for two blank faces are (2, 48), not (2, 7) finite numbers"),
        "NaN logits": (serialized(nan), "its logits for two blank faces are (2, 7) and not all finite"),
    }


def test_hostile_graphs_are_one_line_naming_the_file(graph, tmp_path, capsys):
    for name, (data, message) in hostile_graphs(graph.read_bytes()).items():
        path = tmp_path / f"{name.replace(' ', '-')}.onnx"
        path.write_bytes(data)
        code = main(["predict", str(path), str(tmp_path), "-o", str(tmp_path / "labels.csv")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, (name, err)
        assert err.startswith(f"ferlab: error: {path}: ") and message in err, (name, err)
    assert not (tmp_path / "labels.csv").exists()


def test_a_graph_that_ignores_its_batch_is_stopped_not_misaligned(tmp_path, sample_archive, capsys):
    """Two rows of logits whatever the batch: it passes the two-blank-face check, then the first
    real batch is one line instead of labels shifted onto the wrong faces."""
    from onnx import helper, numpy_helper

    two_rows = ferlab_like([helper.make_node("Constant", [], ["logits"], value=numpy_helper.from_array(
        np.arange(14, dtype=np.float32).reshape(2, 7)))], [2, 7])
    path = tmp_path / "two-rows.onnx"
    path.write_bytes(two_rows.SerializeToString())
    assert main(["evaluate", str(path), "--data", str(sample_archive), "--split", "test", "-o", str(tmp_path / "eval")]) == 2
    assert f"{path}: its logits for 70 faces are (2, 7), not (70, 7)" in capsys.readouterr().err
    assert not (tmp_path / "eval" / "eval-test.json").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_named_like_a_graph_is_named_as_what_it_is(tmp_path, capsys):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    assert main(["evaluate", str(fifo), "-o", str(tmp_path / "eval")]) == 2
    assert f"{fifo}: not a regular file (a device, socket or FIFO)" in capsys.readouterr().err


def test_a_video_through_a_graph_gives_its_checkpoints_boxes_and_emotions(graph, tmp_path):
    """The detector's boxes do not depend on the model; the graph's labels per frame are the
    checkpoint's (PyTorch bf16 against onnxruntime float32) on all but a borderline frame or two."""
    from tests.test_video import faces_by_id, read_rows, two_faces_scene, write_video

    clip = write_video(tmp_path / "two.mp4", [two_faces_scene(i % 10) for i in range(12)])
    for model, out in (("default-fast", "checkpoint"), (str(graph), "graph")):
        assert main(["video", str(clip), "--model", model, "-o", str(tmp_path / out), "--quiet", "--smoothing", "0"]) == 0
    checkpoint, answered = (read_rows(tmp_path / out / "two-frames.csv") for out in ("checkpoint", "graph"))
    assert [row[key] for row in answered for key in ("frame", "face", "x", "y", "w", "h")] == \
        [row[key] for row in checkpoint for key in ("frame", "face", "x", "y", "w", "h")]
    assert len(faces_by_id(answered)) == 2
    same = sum(a["label"] == c["label"] for a, c in zip(answered, checkpoint))
    assert same >= len(checkpoint) - 2 and "happy" in {row["label"] for row in answered}


def dequantized(model) -> dict[str, np.ndarray]:
    """Each tensor an operator reads from the file, by the name it reads it under, in float: an
    initializer, or a ``DequantizeLinear`` of one (an int8 graph's weights; one scale per tensor
    or per channel along axis 0)."""
    from onnx import numpy_helper

    stored = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    values = dict(stored)
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in stored:
            q, scale, zero = (stored[name].astype(np.float64) for name in node.input[:3])
            if scale.ndim == 1 and q.ndim > 1:
                scale, zero = (x.reshape(-1, *[1] * (q.ndim - 1)) for x in (scale, zero))
            values[node.output[0]] = (q - zero) * scale
    return values


def redrawn_parameters(model):
    """(operator, role, trained, redrawn, fan-in or None) for every weight, bias and batch-norm
    parameter of ``model`` and of its re-initialised twin, in float."""
    from ferlab.graph import fan_in, reinitialized

    trained, twin = dequantized(model), dequantized(reinitialized(model, seed=0))
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            fans = fan_in(node, trained[node.input[1]].shape)
            yield from ((node.op_type, role, trained[name], twin[name], fans)
                        for role, name in zip(("weight", "bias"), node.input[1:3]) if name)
        elif node.op_type == "BatchNormalization":
            yield from ((node.op_type, role, trained[name], twin[name], None)
                        for role, name in zip(("scale", "shift", "mean", "variance"), node.input[1:5]))


def int8_graph(path, sample_archive):
    assert main(["export", "default-fast", "-o", str(path), "--int8", "--data", str(sample_archive),
                 "--calibration-faces", "64"]) == 0
    return path


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_a_graphs_random_twin_draws_every_weight_as_pytorch_initialises_it(precision, graph, sample_archive, tmp_path):
    """The randomisation check's random model of a graph: weights and biases uniform in
    +-1/sqrt(fan-in) (PyTorch's reset_parameters), batch norms the identity, the input's
    normalisation untouched; the same seed the same twin, the file's own model left alone."""
    from onnx import numpy_helper

    from ferlab.graph import reinitialized

    path = graph if precision == "float32" else int8_graph(tmp_path / "int8.onnx", sample_archive)
    model = onnx.load(str(path))
    original = model.SerializeToString()
    twin = reinitialized(model, seed=0)
    assert model.SerializeToString() == original
    assert reinitialized(model, seed=0).SerializeToString() == twin.SerializeToString() != \
        reinitialized(model, seed=1).SerializeToString()
    parameters = list(redrawn_parameters(model))
    assert sum(op == "Conv" and role == "weight" for op, role, *_ in parameters) == 12  # fastnet's convolutions
    identity = {"scale": 1.0, "shift": 0.0, "mean": 0.0, "variance": 1.0}
    for op, role, trained, redrawn, fans in parameters:
        if fans is None:
            np.testing.assert_allclose(redrawn, identity[role], atol=1e-6, err_msg=f"{op} {role}")
            continue
        bound = 1 / np.sqrt(fans)
        step = bound / 127 if precision == "int8" and role == "weight" else 0.0  # int8 rounds to a step of the peak
        assert trained.shape == redrawn.shape and np.abs(redrawn).max() <= bound + step + 1e-7, f"{op} {role}"
        assert not np.allclose(trained, redrawn)
        if redrawn.size >= 2000:  # uniform in +-bound: standard deviation bound/sqrt(3)
            assert redrawn.std() == pytest.approx(bound / np.sqrt(3), rel=0.05), f"{op} {role} {redrawn.shape}"
    quantisation = {name for node in model.graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")
                    for name in node.input}
    scalars = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer
               if not t.dims and t.name not in quantisation}
    assert scalars and all(np.array_equal(scalars[t.name], numpy_helper.to_array(t))
                           for t in twin.graph.initializer if t.name in scalars)  # 255, the mean, the spread...


@pytest.mark.parametrize("name", __import__("ferlab.models", fromlist=["list_models"]).list_models())
def test_every_registered_models_graph_can_be_re_initialised(name, tmp_path):
    """A weight no rule reaches would leave a half-trained 'random' model that passes the check
    falsely: every architecture's graph has all its weights redrawn."""
    import dataclasses

    from ferlab.checkpoint import build_architecture
    from ferlab.config import TrainConfig
    from ferlab.export import export_onnx
    from ferlab.graph import reinitialized

    config = TrainConfig(model=name)
    path = tmp_path / f"{name}.onnx"
    export_onnx({"config": dataclasses.asdict(config), "normalization": {"kind": "standardize", "mean": 0.5, "std": 0.25},
                 "model": build_architecture(config).state_dict()}, path)
    model = onnx.load(str(path))
    before, after = dequantized(model), dequantized(reinitialized(model))
    weights = [key for key, value in before.items() if value.ndim >= 2]
    assert weights and all(not np.array_equal(before[key], after[key]) for key in weights)


def test_weights_out_of_every_rules_reach_are_refused_not_left_trained():
    from onnx import helper, numpy_helper

    from ferlab.graph import reinitialized

    weight = numpy_helper.from_array(np.ones((7, 2304), np.float32), "w")
    nodes = casts_then(helper.make_node("Reshape", ["x", "shape"], ["flat"]),
                       helper.make_node("Einsum", ["flat", "w"], ["logits"], equation="bi,ki->bk"))
    model = ferlab_like(nodes, ["batch", 7])
    model.graph.initializer.extend([weight, numpy_helper.from_array(np.array([-1, 2304], np.int64), "shape")])
    with pytest.raises(ValueError, match="weights the re-initialisation does not reach: w"):
        reinitialized(model)
