"""ONNX graphs that ``ferlab export`` wrote, run by the commands that only need answers
(``evaluate``, ``predict``, ``photo``, ``video``, ``serve`` without Grad-CAM, and ``ferlab.load``'s
``predict``/``detect``/``video``):
onnxruntime runs the graph behind the one inference path, ``LoadedModel.logits``, so test-time
augmentation, calibration and every writer downstream are the same as for a checkpoint.

The graph takes uint8 faces (``ferlab.export``'s contract), so the loaded model's normalisation is
``none`` (views in 0..255) and each view is rounded to whole gray levels before it goes in: exact
for the face and its mirror image, within half a gray level of PyTorch's view for a zoomed one.
A graph has no gradients and takes whole 48x48 faces only: explanations that need gradients and
``ten-crop`` are refused in one line, naming the file. Its weights are in reach, though: the trust
check's re-initialised model is the graph with every weight redrawn (``reinitialized``).
"""

from __future__ import annotations

import collections
import contextlib
import math
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ferlab.checkpoint import LoadedModel
from ferlab.config import TrainConfig
from ferlab.data.normalize import FER2013_MEAN_GRAY, Normalization
from ferlab.errors import FerlabError
from ferlab.labels import EMOTIONS, IMAGE_SIZE, NUM_CLASSES
from ferlab.models import list_models

GRAPH_LIMIT = 2**31  # bytes: protobuf's own limit for one message; ferlab's graphs are a few MiB


class GraphNetwork(nn.Module):
    """An onnxruntime session as a network: (N, 1, 48, 48) float faces in 0..255 -> (N, 7) logits.
    No gradients flow through it: gradient-free explanations (LIME, occlusion) explain it."""

    gives_gradients = False  # ferlab.explain.common.gives_gradients

    def __init__(self, session, source: Path, graph):
        super().__init__()
        self.session, self.source, self.graph = session, source, graph  # graph: the session's onnx.ModelProto

    def randomized(self, seed: int = 0) -> GraphNetwork:
        """This graph with every weight redrawn as PyTorch initialises it (``reinitialized``): the
        model-randomisation check's random model (``ferlab.explain.trust.randomized_copy``)."""
        random_graph = reinitialized(self.graph, seed)
        session = start_session(random_graph.SerializeToString(), self.source)
        return GraphNetwork(session, self.source, random_graph).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != (1, IMAGE_SIZE, IMAGE_SIZE):
            raise FerlabError(f"{self.source}: an ONNX graph takes whole 1x{IMAGE_SIZE}x{IMAGE_SIZE} faces, "
                              f"not {tuple(x.shape[1:])}")
        faces = x[:, 0].round().clamp(0, 255).to(torch.uint8).cpu().numpy()  # as the graph's contract: uint8
        logits = torch.from_numpy(self.session.run(["logits"], {"faces": faces})[0])
        if tuple(logits.shape) != (len(faces), NUM_CLASSES):  # a graph that ignores its batch would misalign every label
            raise FerlabError(f"{self.source}: its logits for {len(faces)} faces are {tuple(logits.shape)}, "
                              f"not ({len(faces)}, {NUM_CLASSES})")
        return logits


WEIGHTED_OPERATORS = ("Conv", "Gemm", "MatMul")  # operators whose input 1 is a weight, input 2 a bias
BATCH_NORM_RESET = (1.0, 0.0, 0.0, 1.0)  # scale, shift, running mean, running variance: the identity


def reinitialized(model, seed: int = 0):
    """A copy of ONNX ``model`` with weights and biases redrawn as PyTorch's ``reset_parameters``
    draws them, uniform in +-1/sqrt(fan-in), and batch norms reset to the identity, as
    ``ferlab.explain.trust.randomized_copy`` does to a module. Quantised weights (int8 behind a
    ``DequantizeLinear``) are redrawn in float and quantised again on a scale that fits them.
    Weights no rule here reaches raise ValueError: a half-random model would pass the check falsely."""
    import onnx

    copy = onnx.ModelProto.FromString(model.SerializeToString())
    tensors = GraphTensors(copy.graph)
    generator = np.random.default_rng(seed)
    for node in copy.graph.node:
        if node.op_type in WEIGHTED_OPERATORS and node.input[1] in tensors:
            shape = tensors.shape(node.input[1])
            bound = 1 / math.sqrt(fan_in(node, shape))
            for name in node.input[1:3]:
                if name:
                    tensors.put(name, generator.uniform(-bound, bound, tensors.shape(name)))
        elif node.op_type == "BatchNormalization":
            for name, value in zip(node.input[1:5], BATCH_NORM_RESET):
                tensors.put(name, np.full(tensors.shape(name), value))
    missed = tensors.untouched_weights()
    if missed:
        raise ValueError(f"weights the re-initialisation does not reach: {', '.join(missed[:3])}")
    return copy


def fan_in(node, shape: tuple[int, ...]) -> int:
    """Inputs per output unit of a weight: a Conv's (out, in, kh, kw) in*kh*kw; a Gemm's (in, out)
    in, or (out, in) under transB; a MatMul's (in, out) in."""
    if node.op_type == "Conv":
        return int(np.prod(shape[1:]))
    transposed = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
    return int(shape[1] if transposed else shape[0])


class GraphTensors:
    """A graph's parameters by the name its operators read them under: an initializer, or the
    output of a ``DequantizeLinear`` of one (a quantised graph's weights)."""

    def __init__(self, graph):
        self.initializers = {tensor.name: tensor for tensor in graph.initializer}
        self.dequantized = {node.output[0]: node for node in graph.node
                            if node.op_type == "DequantizeLinear" and node.input[0] in self.initializers}
        self.readers = collections.Counter(name for node in graph.node for name in node.input)
        self.redrawn: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self.initializers or name in self.dequantized

    def stored(self, name: str):
        """The initializer holding ``name``'s values (its integers, where it is quantised)."""
        return self.initializers[self.dequantized[name].input[0] if name in self.dequantized else name]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.stored(name).dims)

    def put(self, name: str, values: np.ndarray) -> None:
        """Store float ``values`` under ``name``: as they are, or quantised (symmetric, one scale)."""
        from onnx import numpy_helper

        tensor = self.stored(name)
        dtype = numpy_helper.to_array(tensor).dtype
        if name in self.dequantized:
            values = self.quantized(self.dequantized[name], values, dtype)
        tensor.CopyFrom(numpy_helper.from_array(values.astype(dtype), tensor.name))
        self.redrawn.add(tensor.name)

    def quantized(self, node, values: np.ndarray, dtype) -> np.ndarray:
        """``values`` as integers of ``dtype``, with ``node``'s scale set to fit them and its zero point to 0."""
        from onnx import numpy_helper

        limit = min(np.iinfo(dtype).max, -np.iinfo(dtype).min)
        peak = float(np.abs(values).max())
        scale = peak / limit if peak > 0 else 1.0
        for name, value in zip(node.input[1:3], (scale, 0)):
            if self.readers[name] > 1:  # rescaled for one tensor, it would misread the others
                raise ValueError(f"{name}: a quantisation scale or zero point shared by several tensors")
            if name in self.initializers:
                old = self.initializers[name]
                array = numpy_helper.to_array(old)
                old.CopyFrom(numpy_helper.from_array(np.full(array.shape, value, array.dtype), old.name))
        return np.clip(np.round(values / scale), -limit, limit)

    def untouched_weights(self) -> list[str]:
        """Names of stored tensors of two or more dimensions (weights) that were not redrawn."""
        return [name for name, tensor in self.initializers.items()
                if len(tensor.dims) >= 2 and name not in self.redrawn]


def read_graph(path: Path) -> bytes:
    """The file's bytes, read once (the session is made from them, not from the path again)."""
    if not path.is_file():
        kind = "not a regular file (a device, socket or FIFO)" if path.exists() else "no such ONNX graph"
        raise FerlabError(f"{path}: {kind}")
    size = path.stat().st_size
    if not size:
        raise FerlabError(f"{path}: an empty file, not an ONNX graph")
    if size > GRAPH_LIMIT:
        raise FerlabError(f"{path}: {size / 2**30:.1f} GiB is over the 2 GiB an ONNX graph may hold")
    try:
        return path.read_bytes()
    except OSError as error:
        raise FerlabError(f"{path}: cannot read it ({error.strerror or error})") from None


def graph_metadata(model) -> dict[str, str]:
    """An ONNX model's metadata properties (``ferlab export`` writes its contract there)."""
    return {entry.key: entry.value for entry in model.metadata_props}


def graph_problem(model) -> str | None:
    """What keeps an ONNX ``model`` (an onnx.ModelProto) from being one of ``ferlab export``'s
    graphs, or None: its producer, classes, input, outputs, temperature, and no external data."""
    import onnx

    metadata = graph_metadata(model)
    if metadata.get("producer") != "ferlab":
        return ("not a graph that ferlab export wrote (its metadata names no producer 'ferlab'); "
                "run it with onnxruntime, or give ferlab the checkpoint it came from")
    classes = metadata.get("classes", "").split(",")
    if classes != list(EMOTIONS):
        return f"classes {classes} differ from {list(EMOTIONS)}"
    initializers = {tensor.name for tensor in model.graph.initializer}
    if any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in model.graph.initializer):
        return "its weights point at external data files; ferlab's graphs hold them inside"
    inputs = [i for i in model.graph.input if i.name not in initializers]
    shape = [d.dim_value or d.dim_param for d in inputs[0].type.tensor_type.shape.dim] if len(inputs) == 1 else []
    if len(inputs) != 1 or inputs[0].name != "faces" or inputs[0].type.tensor_type.elem_type != onnx.TensorProto.UINT8 \
            or len(shape) != 3 or shape[1:] != [IMAGE_SIZE, IMAGE_SIZE]:
        return f"expected one input 'faces', uint8 (batch, {IMAGE_SIZE}, {IMAGE_SIZE}), as ferlab export writes"
    if "logits" not in {output.name for output in model.graph.output}:
        return "it has no 'logits' output"
    temperature = number(metadata.get("temperature", "1.0"))
    if not math.isfinite(temperature) or temperature <= 0:
        return f"calibration temperature {metadata.get('temperature')!r} must be a positive finite number"
    if not 0 <= number(metadata.get("mean_gray", "0")) <= 255:  # NaN fails too
        return f"mean gray level {metadata.get('mean_gray')!r} must be a pixel value, 0..255"
    return None


def number(text: str) -> float:
    """``text`` as a float; NaN where it is none."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def start_session(data: bytes, path: Path):
    """An onnxruntime CPU session of ``data``, on as many threads as PyTorch's own inference."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only: its warnings are about kernels, not the user's input
    try:
        return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph/... for a graph it cannot run
        first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else error.__class__.__name__
        raise FerlabError(f"{path}: onnxruntime cannot run it ({first_line})") from None


def check_answers(session, path: Path) -> None:
    """Run two blank faces through: the graph must give two rows of seven finite logits."""
    try:
        logits = session.run(["logits"], {"faces": torch.zeros(2, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8).numpy()})[0]
    except Exception as error:
        raise FerlabError(f"{path}: onnxruntime failed on two blank faces ({str(error).strip()[:200]})") from None
    if tuple(logits.shape) != (2, NUM_CLASSES) or not torch.isfinite(torch.from_numpy(logits).float()).all():
        raise FerlabError(f"{path}: its logits for two blank faces are {tuple(logits.shape)}"
                          + ("" if tuple(logits.shape) != (2, NUM_CLASSES) else " and not all finite")
                          + f", not (2, {NUM_CLASSES}) finite numbers")


@contextlib.contextmanager
def one_torch_thread():
    """PyTorch on one thread while onnxruntime answers: PyTorch's idle threads spin for a while
    after each of its operations, and on two cores they took onnxruntime's: 0.22x a bare session's
    faces/s one face at a time, 0.59x in batches of 64, 0.85x of 256; with this 0.77-0.84x, 0.97x
    and 1.00-1.01x (benchmarks/exported.py, 2026-12-06). The setting is global: graphs answering
    in several threads at once share one count, and the last to finish restores it."""
    with _ONE_THREAD["lock"]:
        if not _ONE_THREAD["holders"]:
            _ONE_THREAD["saved"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _ONE_THREAD["holders"] += 1
    try:
        yield
    finally:
        with _ONE_THREAD["lock"]:
            _ONE_THREAD["holders"] -= 1
            if not _ONE_THREAD["holders"]:
                torch.set_num_threads(_ONE_THREAD["saved"])


_ONE_THREAD = {"lock": threading.Lock(), "holders": 0, "saved": 1}  # one_torch_thread's shared count


class GraphModel(LoadedModel):
    """``LoadedModel`` for a graph: the same inference path, with what a graph cannot do refused."""

    is_graph = True

    def threads(self) -> contextlib.AbstractContextManager:
        # For explanations as for answers: occluding one face took 92-103 ms against 114-125 ms
        # with PyTorch's threads spinning.
        return one_torch_thread()

    @property
    def window_problem(self) -> str | None:
        return (f"{self.checkpoint['source']}: an ONNX graph takes whole 48x48 faces; "
                "ten-crop needs the checkpoint it was exported from")

    @property
    def mean_gray(self) -> float:
        """The training-set mean pixel the export recorded (FER2013's where it did not); a graph
        takes pixels, so this is in 0..255."""
        return float(self.checkpoint["metadata"].get("mean_gray", FER2013_MEAN_GRAY))

    def describe(self) -> str:
        """What ``ferlab summary`` says of a graph: its contract, calibration, precision and operators."""
        record, metadata = self.checkpoint, self.checkpoint["metadata"]
        operators = ", ".join(f"{name} {count}" for name, count in record["operators"])
        lines = [f"{record['source']}: ONNX graph of {record['architecture'] or 'an unnamed model'}, written by ferlab export "
                 f"({record['bytes'] / 2**20:.1f} MiB)",
                 f"  input   faces uint8 (batch, {IMAGE_SIZE}, {IMAGE_SIZE}), 0..255",
                 f"  output  logits, probabilities float32 (batch, {NUM_CLASSES}): {', '.join(EMOTIONS)}",
                 f"  calibration temperature {record['calibration']['temperature']:.4g}",
                 f"  precision: {record['quantization']}"]
        if "int8_check" in metadata:
            lines.append(f"  int8 check: {metadata['int8_check']}")
        return "\n".join(lines + [f"  {sum(count for _, count in record['operators'])} operators: {operators}"])


def load_graph(path: Path, device: str = "auto") -> GraphModel:
    """An ONNX graph of ``ferlab export`` as a ``GraphModel``, checked before its first answer."""
    if device not in ("auto", "cpu"):
        raise FerlabError(f"{path}: an ONNX graph runs on the CPU here (onnxruntime); drop --device {device}")
    try:
        import onnx
        import onnxruntime  # noqa: F401 - checked here for a clear message
    except ImportError:
        raise FerlabError(f"{path}: running an ONNX graph needs onnx and onnxruntime: pip install 'ferlab[onnx]'") from None
    data = read_graph(path)
    try:
        model = onnx.load_model_from_string(data)
    except Exception:  # protobuf's DecodeError and kin
        raise FerlabError(f"{path}: not an ONNX graph (truncated, damaged or another kind of file)") from None
    problem = graph_problem(model)
    if problem:
        raise FerlabError(f"{path}: {problem}")
    session = start_session(data, path)
    check_answers(session, path)
    metadata = graph_metadata(model)
    architecture = metadata.get("architecture", "")
    config = replace(TrainConfig(), mixed_precision=False, channels_last=False,  # the graph's own precision and layout
                     **({"model": architecture} if architecture in list_models() else {}))
    operators = collections.Counter(node.op_type for node in model.graph.node).most_common()
    record = {"kind": "onnx", "source": str(path), "architecture": architecture, "metadata": metadata,
              "calibration": {"temperature": float(metadata.get("temperature", "1.0"))}, "bytes": len(data),
              "quantization": metadata.get("quantization", "float32"), "operators": operators, "data": {}}
    return GraphModel(GraphNetwork(session, path, model).eval(), Normalization("none"), config, record)
