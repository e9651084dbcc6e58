"""Figures of explanations: per-class method panels, filter visualisations, feature maps and
deletion/insertion curves. Each function takes tensors and a path, writes one PNG, returns the path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ferlab.explain.postprocess import heat_rgb, normalize, overlay, relu  # noqa: E402
from ferlab.outputs import FIGURE_SOURCE_KEY  # noqa: E402
from ferlab.report.figures import save_and_close  # noqa: E402


def displayable(map_: torch.Tensor, kind: str) -> np.ndarray:
    """A raw (1, H, W) map -> what the panel shows: 'heat' ([0, 1] after ReLU), 'signed' ([-1, 1])."""
    if kind == "signed":
        return normalize(map_[None], signed=True)[0, 0].numpy()
    return normalize(relu(map_[None]))[0, 0].numpy()


def draw_heat(axis, face: np.ndarray, map_: torch.Tensor) -> None:
    axis.imshow(overlay(face, displayable(map_, "heat")))


def draw_signed(axis, face: np.ndarray, map_: torch.Tensor) -> None:
    gray = np.repeat((face / 255.0)[..., None], 3, axis=2)
    axis.imshow(np.clip(0.5 * gray + 0.5 * heat_rgb(displayable(map_, "signed"), "bwr"), 0, 1))


def draw_fine(axis, face: np.ndarray, map_: torch.Tensor) -> None:
    axis.imshow(displayable(map_, "heat"), cmap="hot", vmin=0, vmax=1)


def draw_gray(axis, face: np.ndarray, map_: torch.Tensor) -> None:
    axis.imshow(map_.numpy(), cmap="gray", vmin=0, vmax=255)


# How a panel is drawn, by kind: the explanation methods' displays (ferlab.explain.DISPLAYS) and
# 'gray', for maps that are uint8 faces (the masked face of a deletion, say).
PANEL_DRAWERS = {
    "heat": draw_heat,      # the positive part over the face
    "signed": draw_signed,  # red towards, blue against the class, over the face
    "fine": draw_fine,      # a fine-grained map alone: the face under it would hide it
    "gray": draw_gray,
}


def plot_method_panels(faces: torch.Tensor, captions: list[str], panels: dict[str, tuple[torch.Tensor | None, str]],
                       path: Path, title: str = "", source: str | None = None) -> Path:
    """One row per face: the face, then one panel per method; ``source`` (what the figure shows)
    is written into the PNG (``ferlab.outputs.figure_source``).

    ``panels`` maps a column title to (maps (N, 1, 48, 48) or None if not applicable, kind), kind
    being one of ``PANEL_DRAWERS``.
    """
    columns = 1 + len(panels)
    figure, axes = plt.subplots(len(faces), columns, figsize=(1.9 * columns, 2.0 * len(faces)), squeeze=False)
    for row, face in enumerate(faces):
        axes[row, 0].imshow(face.numpy(), cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_ylabel(captions[row], fontsize=8)
        for column, (name, (maps, kind)) in enumerate(panels.items(), start=1):
            axis = axes[row, column]
            if maps is None:
                axis.text(0.5, 0.5, "not\napplicable", ha="center", va="center", fontsize=8, transform=axis.transAxes)
            else:
                PANEL_DRAWERS[kind](axis, face.numpy(), maps[row])
            if row == 0:
                axis.set_title(textwrap.fill(name, 20), fontsize=9)  # a panel is 1.9 inches wide
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(textwrap.fill(title, 16 * columns), fontsize=10)
    figure.tight_layout()
    metadata = {FIGURE_SOURCE_KEY: source} if source is not None else None
    return save_and_close(figure, path, dpi=100, metadata=metadata)


def _unit_range(images: torch.Tensor) -> torch.Tensor:
    low = images.flatten(1).min(1).values[:, None, None]
    high = images.flatten(1).max(1).values[:, None, None]
    return (images - low) / (high - low).clamp(min=1e-12)


def plot_filter_visualisations(layers: dict[str, torch.Tensor], path: Path, title: str = "") -> Path:
    """For each layer, (K, 1, 48, 48) inputs maximising filters 0..K-1, in rows of 8, side by side."""
    rows = max(1, -(-max(len(images) for images in layers.values()) // 8))
    figure = plt.figure(figsize=(6.2 * len(layers), 0.8 * rows + 0.7))
    subfigures = figure.subfigures(1, len(layers), squeeze=False)[0]
    for subfigure, (name, images) in zip(subfigures, layers.items()):
        shown = _unit_range(images[:, 0])
        axes = subfigure.subplots(rows, 8, squeeze=False, gridspec_kw={"wspace": 0.06, "hspace": 0.06})
        for i, axis in enumerate(axes.flat):
            axis.axis("off")
            if i < len(shown):
                axis.imshow(shown[i].numpy(), cmap="gray")
        subfigure.suptitle(name, fontsize=10)
    figure.suptitle(title, fontsize=11, y=1.04)
    return save_and_close(figure, path, dpi=110, bbox_inches="tight")


def plot_feature_maps(face: torch.Tensor, maps: dict[str, torch.Tensor], path: Path, count: int = 16) -> Path:
    """A face and the first ``count`` filter outputs of each layer in ``maps`` ((C, h, w) each)."""
    rows = len(maps)
    figure, axes = plt.subplots(rows, count + 1, figsize=(1.1 * (count + 1), 1.25 * rows), squeeze=False)
    for row, (name, activation) in enumerate(maps.items()):
        axes[row, 0].imshow(face.numpy(), cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_title(name, fontsize=8)
        for column in range(count):
            if column < activation.shape[0]:
                axes[row, column + 1].imshow(activation[column].numpy(), cmap="viridis")
    for axis in axes.flat:
        axis.axis("off")
    figure.tight_layout()
    return save_and_close(figure, path, dpi=90)


def plot_trust_curves(curves: dict[str, tuple[torch.Tensor, torch.Tensor]], path: Path) -> Path:
    """Mean deletion and insertion curves per method (and the random order)."""
    figure, (deletion_axis, insertion_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, (deletion, insertion) in curves.items():
        x = np.linspace(0, 1, deletion.shape[1])
        style = dict(ls="--", color="gray") if name == "random order" else {}
        deletion_axis.plot(x, deletion.mean(0).numpy(), label=name, **style)
        insertion_axis.plot(x, insertion.mean(0).numpy(), label=name, **style)
    for axis, what in ((deletion_axis, "deletion (lower is better)"), (insertion_axis, "insertion (higher is better)")):
        axis.set_xlabel("fraction of pixels removed" if axis is deletion_axis else "fraction of pixels inserted")
        axis.set_ylabel("probability of the class")
        axis.set_title(what, fontsize=10)
        axis.grid(alpha=0.3)
    insertion_axis.legend(fontsize=8)
    figure.tight_layout()
    return save_and_close(figure, path, dpi=100)


def explain_faces_figure(loaded, faces: torch.Tensor, names: list[str], methods: list[str], target: str | None,
                         path: Path, options: dict | None = None, source: str | None = None) -> dict[str, str]:
    """``methods``' maps for (N, 48, 48) uint8 ``faces`` of a loaded model side by side, explaining
    ``target`` (a class name) or each face's predicted class, drawn as one figure at ``path``;
    ``options`` (``layer``, LIME's ``num_samples``, occlusion's ``window``...) go to the methods
    that take them; ``source`` is written into the PNG. One method that cannot explain the model,
    or takes none of ``options``, raises NotApplicable or UnknownChoice; of several, those are left
    out and returned (title -> why)."""
    from ferlab.explain import NotApplicable, get_spec
    from ferlab.explain.postprocess import masked_faces
    from ferlab.labels import EMOTIONS

    probabilities = loaded.probabilities(faces)
    targets = probabilities.argmax(1) if target is None else torch.full((len(faces),), EMOTIONS.index(target))
    panels, left_out, asked = {}, {}, options or {}
    for method in methods:
        spec = get_spec(method)
        try:  # one method takes the options or says which it does not; of several, each gets those it takes
            maps = loaded.explain(method, faces, targets, **(asked if len(methods) == 1 else spec.accepted(asked)))
        except NotApplicable as error:
            if len(methods) == 1:
                raise
            left_out[spec.title] = str(error)
            continue
        panels[spec.title] = (maps, spec.display)
        if method == "saliency":
            panels["masked (top 20%)"] = (masked_faces(faces, maps), "gray")
    captions = [f"{n}: {EMOTIONS[int(t)]} {float(probabilities[i, t]):.2f}" for i, (n, t) in enumerate(zip(names, targets))]
    what = get_spec(methods[0]).title if len(methods) == 1 else "Explanations"
    plot_method_panels(faces, captions, panels, path, f"{what} for the " +
                       ("predicted class" if target is None else f"class {target}"), source)
    return left_out
