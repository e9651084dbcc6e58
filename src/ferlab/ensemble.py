"""Ensembles: combine several models' class probabilities, with equal weights or weights fitted on
PublicTest (never on PrivateTest), and evaluate the combination like a single model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from ferlab.checkpoint import LoadedModel
from ferlab.data.faceset import FaceSet
from ferlab.runs import evaluation_entry, labelled_split, write_evaluation, write_json


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
    out.mkdir(parents=True, exist_ok=True)
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
