"""Inference and metrics: ``infer`` turns faces into logits; ``metrics`` turns logits into numbers.
``evaluate = metrics(infer(...))``, as in airbench."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ferlab.data.normalize import Normalization
from ferlab.device import autocast_for, reuse_freed_memory
from ferlab.labels import EMOTIONS, NUM_CLASSES
from ferlab.tta import TTA_POLICIES, TEN_CROP_SIDE, check_tta  # noqa: F401 - part of this module's interface


def tta_view(x: torch.Tensor, mirrored: bool, zoom: float, shift: tuple[int, int] = (0, 0),
             window: tuple[float, float] | None = None, side: int = TEN_CROP_SIDE) -> torch.Tensor:
    """One TTA view of an (N, C, H, W) batch: zoomed about the centre, then moved ``shift`` =
    (right, down) pixels, then cut to the ``side``-pixel square at ``window`` = (top, left)
    fractions of the room (``tta.py``); the identity view is the batch itself."""
    if zoom != 1.0 or shift != (0, 0):
        right, down = -2 * shift[0] / x.shape[-1], -2 * shift[1] / x.shape[-2]  # in grid units: [-1, 1] spans the side
        theta = torch.tensor([[1 / zoom, 0.0, right], [0.0, 1 / zoom, down]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if window is not None:
        top, left = int(window[0] * (x.shape[-2] - side)), int(window[1] * (x.shape[-1] - side))  # centre: as CentreCrop
        x = x[..., top:top + side, left:left + side]
    return x.flip(-1) if mirrored else x


def infer(model: nn.Module, images: torch.Tensor, normalization: Normalization, *, batch_size: int = 512,
          tta: str = "none", mixed_precision: bool = False, channels_last: bool = False,
          window_side: int = TEN_CROP_SIDE, progress: str = "") -> torch.Tensor:
    """(N, 48, 48) uint8 faces -> (N, 7) float32 logits on the CPU, the model in eval mode.

    ``tta`` names a policy of ``TTA_POLICIES`` whose views' logits are averaged (``flip``: each
    face and its mirror image; ``ten-crop``: windows of ``window_side`` pixels). The model's
    train/eval mode is restored afterwards. ``progress``: a bar of that title on stderr, shown on a
    terminal when the faces take more than one batch.
    """
    return infer_views(model, images, normalization, TTA_POLICIES[check_tta(tta)], batch_size=batch_size,
                       mixed_precision=mixed_precision, channels_last=channels_last, window_side=window_side,
                       progress=progress)


@torch.no_grad()
def infer_views(model: nn.Module, images: torch.Tensor, normalization: Normalization, views, *,
                batch_size: int = 512, mixed_precision: bool = False, channels_last: bool = False,
                window_side: int = TEN_CROP_SIDE, progress: str = "") -> torch.Tensor:
    """``infer`` for any views: the mean logits over ``views``, each the arguments of ``tta_view``
    after the batch ((mirrored, zoom), (mirrored, zoom, shift) or (mirrored, zoom, shift, window))."""
    device = next(model.parameters(), torch.empty(0)).device  # an ONNX graph (ferlab.graph) has no parameters: CPU
    reuse_freed_memory(device)
    was_training = model.training
    model.eval()
    outputs = []
    bar = progress_bar(progress, images.shape[0], batch_size)
    try:
        for start in range(0, images.shape[0], batch_size):
            x = normalization.apply(images[start:start + batch_size].to(device))
            logits = 0
            for view in views:
                viewed = tta_view(x, *view, side=window_side)
                if channels_last:
                    viewed = viewed.contiguous(memory_format=torch.channels_last)
                with autocast_for(device, mixed_precision):
                    logits = logits + model(viewed).float()
            outputs.append((logits / len(views)).cpu())
            if bar is not None:
                bar.update(x.shape[0])
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return torch.cat(outputs) if outputs else torch.zeros(0, NUM_CLASSES)


def progress_bar(title: str, faces: int, batch_size: int):
    """A bar titled ``title`` counting ``faces`` on stderr, on a terminal only, or None where there
    is nothing to show: no title, or one batch (photos and the camera infer a face or a few at a time,
    and even a disabled bar costs 12 us a call)."""
    if not title or faces <= batch_size:
        return None
    from ferlab.progress import progress_bar

    return progress_bar(total=faces, desc=title, unit="face", leave=False)


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(7, 7) int64 counts; rows are true classes, columns predicted."""
    index = labels * NUM_CLASSES + predictions
    return torch.bincount(index, minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)


def most_confused(confusion: torch.Tensor, top: int = 5) -> list[dict]:
    """Off-diagonal cells by share of the true class, largest first."""
    rates = confusion.double() / confusion.sum(1, keepdim=True).clamp(min=1)
    rates.fill_diagonal_(-1)
    order = rates.flatten().argsort(descending=True)[:top]
    pairs = []
    for flat in order.tolist():
        true, pred = divmod(flat, NUM_CLASSES)
        if confusion[true, pred] > 0:
            pairs.append({"true": EMOTIONS[true], "predicted": EMOTIONS[pred],
                          "rate": round(float(rates[true, pred]), 4), "count": int(confusion[true, pred])})
    return pairs


def metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Accuracy, loss, per-class precision/recall/F1, the confusion matrix (counts and
    row-normalised) and the most-confused pairs, as plain Python types."""
    predictions = logits.argmax(1)
    confusion = confusion_matrix(predictions, labels)
    true_positive = confusion.diag().double()
    precision = true_positive / confusion.sum(0).double().clamp(min=1)
    recall = true_positive / confusion.sum(1).double().clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    # Macro F1 over the classes that have faces: a class absent from the labels has no F1 to
    # average (counting it as 0 would report 0.606 where the classes present average 0.707).
    present = confusion.sum(1) > 0
    per_class = {
        name: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
               "f1": round(float(f1[i]), 4), "support": int(confusion[i].sum())}
        for i, name in enumerate(EMOTIONS)
    }
    return {
        "accuracy": float((predictions == labels).double().mean()) if labels.numel() else 0.0,
        "loss": float(F.cross_entropy(logits, labels)) if labels.numel() else 0.0,
        "count": int(labels.numel()),
        "macro_f1": round(float(f1[present].mean()), 4) if present.any() else 0.0,
        "macro_f1_classes": int(present.sum()),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "confusion_normalized": (confusion.double() / confusion.sum(1, keepdim=True).clamp(min=1)).round(decimals=4).tolist(),
        "most_confused": most_confused(confusion),
    }


def format_metrics(result: dict, title: str) -> str:
    over = "" if result["macro_f1_classes"] == NUM_CLASSES else f" (over the {result['macro_f1_classes']} classes present)"
    lines = [f"{title}: accuracy {result['accuracy']:.4f} on {result['count']} faces, macro F1 {result['macro_f1']:.4f}{over}",
             f"{'class':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name, row in result["per_class"].items():
        lines.append(f"{name:<10}{row['precision']:>10.3f}{row['recall']:>10.3f}{row['f1']:>10.3f}{row['support']:>10}")
    if "calibration" in result:
        calibration = result["calibration"]
        after = "" if calibration["temperature"] == 1.0 else \
            f"; with temperature {calibration['temperature']:.2f} (fitted on PublicTest) {100 * calibration['ece_after']:.2f}%"
        lines.append(f"expected calibration error {100 * calibration['ece_before']:.2f}%{after}")
    if result["most_confused"]:
        lines.append("most confused: " + "; ".join(
            f"{p['true']} -> {p['predicted']} {100 * p['rate']:.1f}% ({p['count']})" for p in result["most_confused"]))
    return "\n".join(lines)
