"""Writing a model for use elsewhere; the format follows the output's suffix.

    .pt     a compact ferlab checkpoint: float16 weights, no optimiser state (``ferlab.load`` reads it)
    .onnx   an ONNX graph that needs neither ferlab nor PyTorch (onnxruntime runs it):

            input   faces          uint8  (batch, 48, 48)  gray faces as FER2013's: 0..255, row-major
            output  logits         float32 (batch, 7)
            output  probabilities  float32 (batch, 7)      softmax of logits
            classes in ferlab.EMOTIONS order, also in the file's metadata ("classes"); the batch is
            dynamic; the input normalisation is inside the graph. Float faces in [0, 255]: cast to
            uint8 first (numpy: ``np.rint(x).astype(np.uint8)``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ferlab.checkpoint import build_architecture, export_checkpoint
from ferlab.config import config_from_dict
from ferlab.data.normalize import Normalization
from ferlab.errors import FerlabError
from ferlab.labels import EMOTIONS, IMAGE_SIZE

ONNX_OPSET = 18


class RawFaces(nn.Module):
    """A model that takes (N, 48, 48) uint8 faces and returns (logits, probabilities): the input
    normalisation of ``Normalization.apply`` as graph operations in front of the network."""

    def __init__(self, network: nn.Module, normalization: Normalization):
        super().__init__()
        self.network, self.normalization = network, normalization

    def forward(self, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.normalization.apply(faces)  # (N, 1, 48, 48) float32
        logits = self.network(x)
        return logits, logits.softmax(1)


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
    model = RawFaces(network.float().eval(), normalization).eval()
    example = torch.zeros(2, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    program = torch.onnx.export(model, (example,), input_names=["faces"], output_names=["logits", "probabilities"],
                                dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=ONNX_OPSET,
                                dynamo=True, external_data=False, verbose=False)
    program.model.metadata_props.update({"classes": ",".join(EMOTIONS), "producer": "ferlab",
                                         "architecture": config.model, "input": "faces uint8 (batch, 48, 48) 0..255"})
    program.save(temporary, external_data=False)
    os.replace(temporary, path)


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
