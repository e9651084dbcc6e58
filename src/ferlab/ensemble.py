"""Ensembles: combine several models' class probabilities, with equal weights or weights fitted on
PublicTest (never on PrivateTest), and evaluate the combination like a single model.

An ensemble is also one model: ``ferlab ensemble RUN... -o ensemble.pt`` writes a checkpoint of
kind "ensemble" holding every member (weights, normalisation, calibration) and the combination's
weights; ``load_model`` / ``ferlab.load`` and every command read it like any checkpoint. Its
network, ``EnsembleNet``, takes raw 0..255 faces (each member normalises them its own way) and
returns the log of the weighted mean of the members' calibrated probabilities, so softmax of its
output is the combination. Gradient explanations (saliency, LIME) explain that averaged output;
methods that need one conv layer (Grad-CAM and its kin) do not apply and say so.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from torch import nn

from ferlab.checkpoint import LoadedModel, build_architecture, check_payload
from ferlab.config import config_from_dict
from ferlab.data.faceset import FaceSet
from ferlab.data.normalize import Normalization
from ferlab.errors import FerlabError
from ferlab.runs import evaluation_entry, labelled_split, make_folder, write_evaluation, write_json


def combine(probabilities: list[torch.Tensor], weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean of (N, 7) probability tensors; equal weights by default. Returns (N, 7)."""
    stacked = torch.stack(probabilities)  # (M, N, 7)
    if weights is None:
        weights = torch.full((len(probabilities),), 1.0 / len(probabilities))
    return torch.einsum("m,mnc->nc", weights.to(stacked.dtype), stacked)


def fit_weights(probabilities: list[torch.Tensor], labels: torch.Tensor, steps: int = 300, lr: float = 0.1) -> torch.Tensor:
    """Non-negative weights summing to one that minimise the negative log-likelihood of the
    combination on the given (validation) faces; a softmax over free parameters keeps them valid."""
    stacked = torch.stack(probabilities).double()
    logits = torch.zeros(len(probabilities), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=lr)
    for _ in range(steps):
        mixed = torch.einsum("m,mnc->nc", logits.softmax(0), stacked)
        loss = F.nll_loss(mixed.clamp_min(1e-12).log(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return logits.detach().softmax(0).float()


def evaluate_ensemble(members: dict[str, LoadedModel], faces: FaceSet, out: Path, *, fit: bool = False,
                      tta: str = "none", log: Callable[[str], None] = lambda _: None) -> dict:
    """Evaluate the combination of ``members`` (name -> model) on PublicTest and PrivateTest like a
    single run (eval-*.json, confusion matrices, mistakes in ``out``); with ``fit``, the weights are
    fitted on PublicTest. Returns the summary written to ``out/metrics.json``."""
    make_folder(out)
    splits = {split: labelled_split(faces, split) for split in ("val", "test")}
    probabilities = {split: [m.probabilities(subset.images, tta=tta) for m in members.values()]
                     for split, subset in splits.items()}
    weights = fit_weights(probabilities["val"], splits["val"].labels) if fit else None
    summary: dict = {"runs": list(members), "weights": weights.tolist() if weights is not None else "equal", "tta": tta,
                     "data": faces.source, "members": {name: {} for name in members}, "evaluations": {}}
    for split, subset in splits.items():
        for name, p in zip(members, probabilities[split]):
            summary["members"][name][f"{split}_accuracy"] = float((p.argmax(1) == subset.labels).double().mean())
        result = write_evaluation(combine(probabilities[split], weights).clamp_min(1e-12).log(), subset, split, out, tta=tta)
        summary[f"{split}_accuracy"] = result["accuracy"]
        summary["evaluations"][result["name"]] = evaluation_entry(result)
        log(result["report"])
    for name, member in summary["members"].items():
        log(f"member {name}: PublicTest {member['val_accuracy']:.4f}, PrivateTest {member['test_accuracy']:.4f}")
    write_json(out / "metrics.json", summary)
    return summary


class EnsembleNet(nn.Module):
    """(N, 1, 48, 48) float faces in 0..255 -> (N, 7) log of the weighted mean of the members'
    calibrated probabilities (softmax of it is the combination)."""

    no_conv_layer = ("an ensemble has no single convolutional layer to look at; explain it with saliency, lime or "
                     "occlusion (they explain the averaged output), or explain one member")

    def __init__(self, members: list[nn.Module], normalizations: list[Normalization], temperatures: list[float],
                 weights: list[float]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.normalizations, self.temperatures = normalizations, temperatures
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        mixed = 0
        for member, normalization, temperature, weight in zip(self.members, self.normalizations, self.temperatures,
                                                             self.weights):
            mixed = mixed + weight * (member(normalization.apply(faces)).float() / temperature).softmax(1)
        return mixed.clamp_min(1e-12).log()


MEMBER_KEYS = ("config", "model", "normalization", "calibration", "data", "classes", "format", "version", "metrics",
               "history", "distillation")  # the last two: what training each member took


def ensemble_payload(members: dict[str, LoadedModel], weights: list[float]) -> dict:
    """A checkpoint payload (for ``save_checkpoint``) of kind "ensemble": every member's weights,
    normalisation and calibration (as plain dicts), and the combination's weights."""
    first = next(iter(members.values()))
    return {"kind": "ensemble", "names": list(members), "weights": [float(w) for w in weights],
            "members": [{k: v for k, v in m.checkpoint.items() if k in MEMBER_KEYS} for m in members.values()],
            "config": first.checkpoint["config"], "data": first.checkpoint.get("data", {}),
            "normalization": Normalization("none").to_dict(), "model": {}}


def check_ensemble(payload: dict) -> str | None:
    """What is wrong with an ensemble payload, or None (each member is checked like a checkpoint,
    so a member with another class order is named)."""
    members, weights = payload.get("members"), payload.get("weights")
    if not isinstance(members, list) or len(members) < 2:
        return "an ensemble needs a list of at least two members"
    if not isinstance(weights, list) or len(weights) != len(members) or \
            not all(isinstance(w, (int, float)) and w >= 0 for w in weights) or sum(weights) <= 0:
        return f"ensemble weights {weights!r}: expected {len(members)} non-negative numbers, not all zero"
    for i, member in enumerate(members):
        problem = check_payload(member) if isinstance(member, dict) else "not a checkpoint"
        if problem:
            return f"member {i + 1}: {problem}"
    return None


def load_ensemble(payload: dict) -> tuple[nn.Module, Normalization]:
    """The network and (identity) input normalisation of an ensemble payload."""
    problem = check_ensemble(payload)
    if problem:
        raise FerlabError(problem)
    networks, normalizations, temperatures = [], [], []
    for member in payload["members"]:
        network = build_architecture(config_from_dict(member["config"]))
        network.load_state_dict(member["model"])
        networks.append(network.eval())
        normalizations.append(Normalization(**member["normalization"]))
        temperatures.append(float(member.get("calibration", {}).get("temperature", 1.0)))
    total = sum(payload["weights"])
    model = EnsembleNet(networks, normalizations, temperatures, [w / total for w in payload["weights"]]).eval()
    return model, Normalization("none")
