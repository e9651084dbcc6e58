"""Matplotlib figures of a run: training curves, an evaluation's confusion matrix, reliability
diagram and misclassified faces, experiment arms.
Each function takes plain data and a path, writes one PNG and returns the path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ferlab.labels import EMOTIONS  # noqa: E402
from ferlab.outputs import save_figure  # noqa: E402


def save_and_close(figure, path: Path, **options) -> Path:
    """``figure`` written to ``path`` whole or not at all (``ferlab.outputs``), and closed either way."""
    try:
        save_figure(figure, path, **options)
    finally:
        plt.close(figure)
    return path


def plot_history(history: list[dict], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, train and validation, side by side."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, axis in (("loss", loss_axis), ("accuracy", accuracy_axis)):
        axis.plot(epochs, [row[f"train_{key}"] for row in history], "o-", ms=3, label="train (augmented)")
        axis.plot(epochs, [row[f"val_{key}"] for row in history], "o-", ms=3, label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
        axis.legend()
    best = max(history, key=lambda r: r["val_accuracy"])
    accuracy_axis.axvline(best["epoch"], color="gray", ls="--", lw=1)
    accuracy_axis.set_title(f"best validation {best['val_accuracy']:.3f} at epoch {best['epoch']}", fontsize=9)
    figure.suptitle(title)
    figure.tight_layout()
    return save_and_close(figure, path, dpi=110)


def plot_confusion(confusion_normalized: list[list[float]], path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix with class names on both axes."""
    matrix = np.asarray(confusion_normalized)
    figure, axis = plt.subplots(figsize=(6.2, 5.4))
    image = axis.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right")
    axis.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (row, column), value in np.ndenumerate(matrix):
        axis.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=8,
                  color="white" if value > 0.5 else "black")
    figure.colorbar(image, fraction=0.046)
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    return save_and_close(figure, path, dpi=110)


def plot_reliability(before: dict, after: dict | None, temperature: float, path: Path, title: str = "") -> Path:
    """Reliability diagram (``calibration.reliability`` results): accuracy against confidence per
    bin, before and (where a temperature was fitted) after calibration; the diagonal is perfect."""
    figure, axis = plt.subplots(figsize=(5.2, 4.8))
    axis.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
    curves = [(before, "uncalibrated", "tab:red")]
    if after is not None:
        curves.append((after, f"temperature {temperature:.2f}", "tab:blue"))
    for result, label, color in curves:
        filled = [i for i, n in enumerate(result["counts"]) if n > 0]
        axis.plot([result["confidence"][i] for i in filled], [result["accuracy"][i] for i in filled], marker="o",
                  color=color, label=f"{label}: ECE {100 * result['ece']:.1f}%")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("confidence (mean of the bin)")
    axis.set_ylabel("accuracy of the bin")
    axis.legend(loc="upper left", fontsize=8)
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    return save_and_close(figure, path, dpi=110)


def plot_face_grid(images: torch.Tensor, captions: list[str], path: Path, title: str = "", columns: int = 8) -> Path:
    """(N, 48, 48) uint8 faces in a grid with a caption under each."""
    count = max(1, images.shape[0])
    rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.55), squeeze=False)
    for i, axis in enumerate(axes.flat):
        axis.axis("off")
        if i < images.shape[0]:
            axis.imshow(images[i].numpy(), cmap="gray", vmin=0, vmax=255)
            axis.set_title(captions[i], fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return save_and_close(figure, path, dpi=110)


def plot_evaluation(result: dict, images: torch.Tensor, labels: torch.Tensor, probabilities: torch.Tensor,
                    out_dir: Path, title: str, gallery: int = 32) -> None:
    """An evaluation's figures (``runs.write_evaluation``'s result, named by its ``name``):
    reliability-*.png (calibration before and after), confusion-*.png and misclassified-*.png, a
    gallery of the most confident mistakes among (N, 48, 48) ``images``."""
    suffix, calibration = result["name"], result["calibration"]
    plot_reliability(calibration["reliability_before"],
                     calibration["reliability_after"] if calibration["temperature"] != 1.0 else None,
                     calibration["temperature"], out_dir / f"reliability-{suffix}.png", f"{title}: calibration")
    plot_confusion(result["confusion_normalized"], out_dir / f"confusion-{suffix}.png",
                   f"{title}: accuracy {result['accuracy']:.3f}")
    confidence, predictions = probabilities.max(1)
    wrong = (predictions != labels).nonzero().flatten()
    wrong = wrong[confidence[wrong].argsort(descending=True)][:gallery]  # most confident mistakes first
    captions = [f"{EMOTIONS[int(labels[i])]}→{EMOTIONS[int(predictions[i])]} {float(confidence[i]):.2f}"
                for i in wrong.tolist()]
    plot_face_grid(images[wrong], captions, out_dir / f"misclassified-{suffix}.png",
                   f"{title}: most confident mistakes (true→predicted, confidence)")


def plot_timeline(tracks: dict[int, list[tuple[float, np.ndarray]]], path: Path, title: str = "") -> Path:
    """One panel per face (id -> [(seconds, (7,) probabilities)]): each emotion's probability
    over time, stacked to 1, so the widest band is the emotion shown most."""
    shown = list(tracks.items())[:12] or [(0, [])]
    figure, axes = plt.subplots(len(shown), 1, figsize=(9, 1.9 * len(shown) + 0.6), squeeze=False, sharex=True)
    colours = plt.get_cmap("tab10").colors
    for axis, (face, history) in zip(axes[:, 0], shown):
        if history:
            times = [t for t, _ in history]
            values = np.stack([p for _, p in history]).T  # (7, frames)
            axis.stackplot(times, values, colors=colours[:len(EMOTIONS)], labels=EMOTIONS, step="mid")
        axis.set_ylim(0, 1)
        axis.set_ylabel(f"face #{face}" if history else "no face", fontsize=9)
    if any(history for _, history in shown):
        axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    figure.suptitle(title + (f" (the first 12 of {len(tracks)} faces)" if len(tracks) > 12 else ""))
    figure.tight_layout()
    return save_and_close(figure, path, dpi=100)


def plot_arms(histories: dict[str, list[list[dict]]], path: Path, title: str = "") -> Path:
    """Training and validation accuracy per epoch for each arm of an experiment: the mean over
    seeds as a line, the range over seeds as a band."""
    figure, (train_axis, val_axis) = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for index, (label, runs) in enumerate(histories.items()):
        color = f"C{index}"
        for key, axis in (("train_accuracy", train_axis), ("val_accuracy", val_axis)):
            epochs = min(len(h) for h in runs)
            values = np.array([[row[key] for row in h[:epochs]] for h in runs])
            x = np.arange(1, epochs + 1)
            axis.plot(x, values.mean(0), "o-", ms=3, color=color, label=label)
            if len(runs) > 1:
                axis.fill_between(x, values.min(0), values.max(0), color=color, alpha=0.2)
    for axis, name in ((train_axis, "training (augmented batches)"), (val_axis, "validation (PublicTest)")):
        axis.set_title(name, fontsize=10)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    train_axis.set_ylabel("accuracy")
    val_axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return save_and_close(figure, path, dpi=100)
