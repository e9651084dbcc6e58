"""Calibrated probabilities: temperature scaling (Guo et al., "On Calibration of Modern Neural
Networks", ICML 2017) and the expected calibration error that measures it.

A network trained with cross-entropy is often over-confident: of the faces it gives 0.9, fewer
than 90% are right. Dividing the logits by one temperature T > 1, fitted to minimise the
negative log-likelihood on PublicTest, fixes most of it without changing any label (the argmax
is the same). The temperature lives in the checkpoint (``checkpoint["calibration"]``) and every
probability ferlab returns (``LoadedModel.probabilities``) uses it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ECE_BINS = 15                        # equal-width confidence bins, as in Guo et al.
TEMPERATURE_RANGE = (0.05, 20.0)     # searched on a log scale


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    return float(F.cross_entropy(logits.double() / temperature, labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, steps: int = 60) -> float:
    """The T minimising the NLL of softmax(logits / T) on (N, 7) ``logits`` with (N,) ``labels``:
    a golden-section search on log T (the NLL is convex in 1/T), deterministic and exact to
    about 1e-6 in log T after 60 steps."""
    low, high = (math.log(v) for v in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = (negative_log_likelihood(logits, labels, math.exp(v)) for v in (a, b))
    for _ in range(steps):
        if loss_a < loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = negative_log_likelihood(logits, labels, math.exp(a))
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = negative_log_likelihood(logits, labels, math.exp(b))
    return math.exp((low + high) / 2)


def reliability(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> dict:
    """Per equal-width confidence bin: the faces in it, their mean confidence and their accuracy;
    and the expected calibration error, sum over bins of (share of faces) x |accuracy - confidence|."""
    confidence, predictions = probabilities.double().max(1)
    correct = (predictions == labels).double()
    index = (confidence * bins).long().clamp(max=bins - 1)
    counts = torch.bincount(index, minlength=bins).double()
    mean_confidence = torch.bincount(index, confidence, minlength=bins) / counts.clamp(min=1)
    accuracy = torch.bincount(index, correct, minlength=bins) / counts.clamp(min=1)
    ece = float(((counts / counts.sum().clamp(min=1)) * (accuracy - mean_confidence).abs()).sum())
    return {"ece": ece, "bins": bins, "counts": counts.long().tolist(),
            "confidence": mean_confidence.tolist(), "accuracy": accuracy.tolist()}


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    return reliability(probabilities, labels, bins)["ece"]


def calibrate(loaded, faces) -> dict:
    """Fit the temperature of a loaded model (``checkpoint.LoadedModel``) on the PublicTest (val)
    faces of ``faces``, through the model's one inference path; returns what the checkpoint
    keeps: the temperature, where it was fitted, and the NLL and ECE there before and after."""
    from ferlab.errors import FerlabError

    val = faces.split("val")
    if len(val) == 0 or not val.labelled:
        raise FerlabError(f"{faces.source}: no labelled validation (PublicTest) faces to calibrate on")
    logits = loaded.logits(val.images)
    temperature = fit_temperature(logits, val.labels)
    return {"temperature": temperature, "fitted_on": val.split_title("val"), "faces": len(val),
            "nll_before": negative_log_likelihood(logits, val.labels, 1.0),
            "nll_after": negative_log_likelihood(logits, val.labels, temperature),
            "ece_before": expected_calibration_error(logits.softmax(1), val.labels),
            "ece_after": expected_calibration_error((logits / temperature).softmax(1), val.labels)}


def save_calibrated(payload: dict, calibration: dict, path) -> None:
    """``payload`` (a checkpoint) with ``calibration`` added, written atomically to ``path``."""
    from ferlab.checkpoint import save_checkpoint

    kept = {k: v for k, v in payload.items() if k not in ("format", "version", "classes")}
    save_checkpoint(path, {**kept, "calibration": calibration})


def calibrate_checkpoint(loaded, faces, output):
    """Fit the temperature of a loaded model on ``faces``' PublicTest, write its checkpoint with
    the calibration to ``output`` and return the model calibrated (no second load from disk)."""
    import dataclasses

    calibration = calibrate(loaded, faces)
    save_calibrated(loaded.checkpoint, calibration, output)
    return dataclasses.replace(loaded, checkpoint={**loaded.checkpoint, "calibration": calibration})


def describe_calibration(calibration: dict) -> str:
    return (f"calibrated on {calibration['fitted_on']}: temperature {calibration['temperature']:.3f}, "
            f"ECE {100 * calibration['ece_before']:.2f}% -> {100 * calibration['ece_after']:.2f}%, "
            f"NLL {calibration['nll_before']:.4f} -> {calibration['nll_after']:.4f}")
