"""Writing a model for use elsewhere; the format follows the output's suffix.

    .pt     a compact ferlab checkpoint: float16 weights, no optimiser state (``ferlab.load`` reads it)
    .onnx   an ONNX graph that needs neither ferlab nor PyTorch (onnxruntime runs it):

            input   faces          uint8  (batch, 48, 48)  gray faces as FER2013's: 0..255, row-major
            output  logits         float32 (batch, 7)
            output  probabilities  float32 (batch, 7)      softmax(logits / T), T the model's calibration
                                                           temperature (metadata "temperature"), as
                                                           every probability ferlab gives
            classes in ferlab.EMOTIONS order, also in the file's metadata ("classes"); the batch is
            dynamic; the input normalisation is inside the graph. Float faces in [0, 255]: cast to
            uint8 first (numpy: ``np.rint(x).astype(np.uint8)``).
    .onnx with ``int8``: the same contract, the graph quantised by onnxruntime (static, QDQ: int8
            weights per output channel, uint8 activations whose ranges are calibrated on Training
            faces); checked beside float32 on PublicTest as it is written (``Int8Check``).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ferlab.checkpoint import build_architecture, calibration_temperature, export_checkpoint
from ferlab.config import config_from_dict
from ferlab.data.faceset import FaceSet
from ferlab.data.normalize import Normalization
from ferlab.errors import FerlabError
from ferlab.labels import EMOTIONS, IMAGE_SIZE
from ferlab.outputs import written

ONNX_OPSET = 18


class RawFaces(nn.Module):
    """A model that takes (N, 48, 48) uint8 faces and returns (logits, calibrated probabilities):
    the input normalisation of ``Normalization.apply`` as graph operations in front of the network,
    and the calibration temperature behind it (``LoadedModel.probabilities``)."""

    def __init__(self, network: nn.Module, normalization: Normalization, temperature: float = 1.0):
        super().__init__()
        self.network, self.normalization, self.temperature = network, normalization, temperature

    def forward(self, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.normalization.apply(faces)  # (N, 1, 48, 48) float32
        logits = self.network(x)
        return logits, (logits / self.temperature).softmax(1)


def export_onnx(payload: dict, path: Path) -> None:
    """The checkpoint ``payload``'s model as one self-contained ONNX file (see the module's
    docstring for the contract)."""
    try:
        import onnx  # noqa: F401 - the exporter's own dependencies, checked for a clear message
        import onnxscript  # noqa: F401
    except ImportError:
        raise FerlabError("ONNX export needs the onnx and onnxscript packages: pip install 'ferlab[onnx]'") from None
    config = config_from_dict(payload["config"])
    if payload.get("kind") == "ensemble":  # members normalise inside EnsembleNet; its output is log-probabilities
        from ferlab.ensemble import load_ensemble

        network, normalization = load_ensemble(payload)
    else:
        network, normalization = build_architecture(config), Normalization(**payload["normalization"])
        network.load_state_dict(payload["model"])
    temperature = calibration_temperature(payload)
    model = RawFaces(network.float().eval(), normalization, temperature).eval()
    example = torch.zeros(2, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    program = torch.onnx.export(model, (example,), input_names=["faces"], output_names=["logits", "probabilities"],
                                dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=ONNX_OPSET,
                                dynamo=True, external_data=False, verbose=False)
    program.model.metadata_props.update({"classes": ",".join(EMOTIONS), "producer": "ferlab",
                                         "architecture": config.model, "input": "faces uint8 (batch, 48, 48) 0..255",
                                         "temperature": repr(temperature), **mean_gray_entry(normalization)})
    with written(path) as temporary:
        program.save(temporary, external_data=False)


def mean_gray_entry(normalization: Normalization) -> dict[str, str]:
    """The training-set mean pixel (0..255) as graph metadata, where the model recorded one: what
    explanations of the graph put where they hide pixels (``GraphModel.mean_gray``)."""
    if normalization.kind != "standardize":
        return {}
    return {"mean_gray": f"{normalization.mean * 255:.4f}"}


def export_pt(payload: dict, path: Path) -> None:
    export_checkpoint(payload, path)


EXPORTERS = {".pt": export_pt, ".onnx": export_onnx}  # output suffix -> writer


def export_format(path: Path) -> str:
    """The format ``path``'s suffix names (a key of EXPORTERS), or a FerlabError."""
    suffix = path.suffix.lower()
    if suffix not in EXPORTERS:
        raise FerlabError(f"{path}: unknown export format {suffix or '(no suffix)'!r}; "
                          f"name the file {' or '.join('*' + s for s in EXPORTERS)}")
    return suffix


def export_model(payload: dict, path: Path) -> str:
    """Write ``payload`` (a checkpoint) in the format ``path``'s suffix names; returns that suffix."""
    suffix = export_format(path)
    EXPORTERS[suffix](payload, path)
    return suffix


INT8_CALIBRATION_FACES = 512  # Training faces whose activations set the int8 ranges


@dataclass(frozen=True)
class Int8Check:
    """The int8 graph beside its float32 original on a held-out split, measured as it is written."""

    split: str  # the split's title ("PublicTest (fer2013.csv)")
    faces: int
    float_accuracy: float  # fractions
    int8_accuracy: float
    agreement: float  # of faces given the same label by both graphs

    def describe(self) -> str:
        return (f"{self.split}: {100 * self.int8_accuracy:.2f}% int8 against {100 * self.float_accuracy:.2f}% "
                f"float32, the same label on {100 * self.agreement:.1f}% of {self.faces:,} faces")


def export_int8(payload: dict, path: Path, faces: FaceSet, calibration_faces: int = INT8_CALIBRATION_FACES,
                seed: int = 0) -> Int8Check:
    """The checkpoint ``payload``'s model as an int8 ONNX file at ``path`` (the module's contract),
    its activation ranges calibrated on ``calibration_faces`` Training faces of ``faces`` drawn from
    ``seed``, and checked beside the float32 graph on the validation split (PublicTest), which the
    returned check and the file's metadata ("int8_check") report. Nothing is chosen on it."""
    training, held_out = faces.split("train"), faces.split("val")
    if not faces.labelled or not len(training) or not len(held_out):
        raise FerlabError(f"{faces.source}: int8 export needs labelled faces with Training and PublicTest "
                          "(or validation) splits: the first to calibrate on, the second to check on")
    chosen = torch.randperm(len(training), generator=torch.Generator().manual_seed(seed))[:calibration_faces]
    with written(path) as quantized, tempfile.TemporaryDirectory(prefix="ferlab-int8-") as folder:
        original = Path(folder) / "float32.onnx"
        export_onnx(payload, original)
        quantize_onnx(original, quantized, training.images[chosen], Path(folder))
        check = compare_graphs(original, quantized, held_out)
        describe_quantization(quantized, check, len(chosen))
    return check


def quantize_onnx(source: Path, output: Path, calibration: torch.Tensor, work: Path, batch: int = 64) -> None:
    """onnxruntime's static quantisation of ``source`` into ``output``: QDQ, int8 weights per output
    channel, uint8 activations with ranges from ``calibration`` (uint8 faces)."""
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise FerlabError("int8 export needs onnxruntime: pip install 'ferlab[onnx]'") from None

    class Faces(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"faces": calibration[i:i + batch].numpy()} for i in range(0, len(calibration), batch)])

        def get_next(self):
            return next(self.batches, None)

    prepared = work / "prepared.onnx"  # shapes inferred and graph folded, as onnxruntime advises first
    quant_pre_process(str(source), str(prepared))
    outputs = float_outputs(prepared)
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # its per-channel axis warnings for a batch norm after a pool
    try:
        quantize_static(str(prepared), str(output), Faces(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=outputs)
    finally:
        root.setLevel(level)


def float_outputs(path: Path) -> list[str]:
    """The nodes that write the graph's outputs (the classifier and the softmax): left in float so
    that logits and probabilities keep their precision (quantised, probabilities came in steps of
    1/255 and summed to 0.992)."""
    import onnx

    graph = onnx.load(str(path)).graph
    outputs = {output.name for output in graph.output}
    writers = {name: node for node in graph.node for name in node.output}
    chosen = [writers[name] for name in outputs]
    chosen += [writers[name] for node in chosen if node.op_type == "Softmax" for name in node.input if name in writers]
    if not all(node.name for node in chosen):
        raise FerlabError(f"{path.name}: an output node without a name cannot be kept in float")
    return sorted({node.name for node in chosen})


def onnx_labels(path: Path, faces: torch.Tensor) -> torch.Tensor:
    """The labels an ONNX file of this module's contract gives (N, 48, 48) uint8 ``faces``."""
    import onnxruntime

    return session_labels(onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]), faces)


def session_labels(session, faces: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The labels an onnxruntime session of this module's contract gives ``faces``, in batches."""
    import numpy as np

    logits = [session.run(["logits"], {"faces": faces[i:i + batch].numpy()})[0] for i in range(0, len(faces), batch)]
    return torch.from_numpy(np.concatenate(logits)).argmax(1)


def compare_graphs(original: Path, quantized: Path, held_out: FaceSet) -> Int8Check:
    """The int8 graph's labels beside the float32 graph's on the held-out faces."""
    first, second = onnx_labels(original, held_out.images), onnx_labels(quantized, held_out.images)
    return Int8Check(held_out.split_title("val"), len(held_out), fraction_equal(first, held_out.labels),
                     fraction_equal(second, held_out.labels), fraction_equal(first, second))


def fraction_equal(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a == b).float().mean())


def describe_quantization(path: Path, check: Int8Check, calibration_faces: int) -> None:
    """Say in the file's own metadata how it was quantised and what that cost."""
    import onnx

    model = onnx.load(str(path))
    props = {entry.key: entry.value for entry in model.metadata_props}
    props.update(quantization=f"onnxruntime static int8 (QDQ, per-channel weights), activations calibrated on "
                              f"{calibration_faces} Training faces", int8_check=check.describe())
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(path))
