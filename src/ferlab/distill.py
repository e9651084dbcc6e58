"""Knowledge distillation (Hinton et al. 2015): a student learns its teachers' softened outputs on
the very views it trains on, blended with the true labels.

    loss = w * CE(student, labels) + (1 - w) * T^2 * KL(teachers_T || student_T)

where ``_T`` is a softmax of logits divided by the temperature T, ``teachers_T`` the mean of the
teachers' softened probabilities (one teacher, or an ensemble of several; with ``teacher_flip``,
each on the view and its mirror image), and T^2 keeps the soft
term's gradients on the scale of the hard one (the paper's correction). ``ferlab distill`` and
``TrainConfig.teachers`` use it; ``training.fit`` loads the teachers once and calls
``Teachers.soft_targets`` in every step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ferlab.checkpoint import LoadedModel, check_distinct_models, load_model, read_checkpoint, resolve_checkpoint
from ferlab.config import ConfigError, check_model_options
from ferlab.data.normalize import Normalization
from ferlab.device import autocast_for
from ferlab.errors import FerlabError
from ferlab.labels import IMAGE_SIZE


def distillation_loss(student_logits: torch.Tensor, soft_targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(soft_targets || softmax(student_logits / T)), the mean over faces. Zero exactly
    when the student's softened probabilities equal the targets."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    kl = F.kl_div(log_student, soft_targets, reduction="batchmean")
    return temperature ** 2 * kl


def training_seconds(checkpoint: dict) -> float | None:
    """The whole training time behind a checkpoint: its own epochs, plus its teachers' for a
    distilled model, plus its starting weights' for a fine-tuned or continued one (``--init``),
    plus every member's for an ensemble file; None where a part is unrecorded. A model that
    appears twice in the tree (a student continued under its own teacher) counts twice. Records
    that are not what ferlab writes (a damaged or hand-made file) count as unrecorded."""
    try:
        if checkpoint.get("kind") == "ensemble":
            parts = [training_seconds(member) for member in checkpoint["members"]]
            return None if None in parts else sum(parts)
        history = checkpoint.get("history")
        if not history:
            return None
        parts = [sum(float(row["seconds"]) for row in history)]
        if "distillation" in checkpoint:
            parts.append(checkpoint["distillation"].get("teachers_train_seconds"))
        if "init" in checkpoint:
            parts.append(checkpoint["init"].get("train_seconds"))
        return None if None in parts else sum(float(part) for part in parts)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Teachers:
    models: tuple[LoadedModel, ...]
    sources: tuple[str, ...]       # as the user named them
    normalization: Normalization   # shared by every teacher, and so by the student

    @torch.no_grad()
    def soft_targets(self, x: torch.Tensor, temperature: float, flip: bool = False) -> torch.Tensor:
        """The mean over teachers of softmax(logits / T) for a batch the student sees (already
        normalised): (N, 7) float32 probabilities. ``flip``: each teacher's mean over the view and
        its mirror image (its flip TTA: a better teacher for the price of a second pass)."""
        views = torch.cat([x, x.flip(3)]) if flip else x
        total = 0
        for teacher in self.models:
            with autocast_for(x.device, teacher.config.mixed_precision):
                total = total + (teacher.model(views).float() / temperature).softmax(1)
        if flip:
            total = total[: len(x)] + total[len(x):]
        return total / (len(self.models) * (2 if flip else 1))

    def card(self, config) -> dict:
        """What the student's checkpoint records about its teaching (``distillation``)."""
        described = [describe_teacher(source, teacher) for source, teacher in zip(self.sources, self.models)]
        seconds = [entry["train_seconds"] for entry in described]
        return {"teachers": described, "temperature": config.distill_temperature,
                "hard_label_weight": config.hard_label_weight, "teacher_flip": config.teacher_flip,
                "teachers_train_seconds": None if None in seconds else sum(seconds)}


def describe_teacher(source: str, teacher: LoadedModel) -> dict:
    checkpoint = teacher.checkpoint
    return {"source": source, "model": teacher.config.model, "model_options": dict(teacher.config.model_options),
            "kind": checkpoint.get("kind", "single"), "epoch": checkpoint.get("epoch"),
            "val_accuracy": checkpoint.get("metrics", {}).get("val_accuracy"),
            "train_seconds": training_seconds(checkpoint)}


def load_teachers(sources: list[str], device: torch.device) -> Teachers:
    """Every teacher on ``device``, in eval mode and frozen. Teachers must agree on their input
    normalisation (the student and they see one tensor); classes are checked as each loads."""
    loaded = []
    for source in sources:
        teacher = load_model(source, device=str(device))
        freeze(teacher.model)
        loaded.append(teacher)
    normalization = shared_normalization(sources, [teacher.normalization for teacher in loaded])
    return Teachers(tuple(loaded), tuple(os.fspath(s) for s in sources), normalization)


def check_teachers(sources: list[str], smallest_view: int = IMAGE_SIZE) -> None:
    """``load_teachers``' checks from the checkpoints alone (networks built on the meta device,
    no weights): the command line runs them before it makes a run folder, so a bad teacher
    leaves nothing behind. Every teacher (every member of an ensemble) must also take the
    student's smallest training view, ``smallest_view`` pixels (crops, progressive resizing)."""
    check_distinct_models(sources, "teachers of a student")
    payloads = [read_checkpoint(resolve_checkpoint(source)) for source in sources]
    shared_normalization(sources, [Normalization(**payload["normalization"]) for payload in payloads])
    for source, payload in zip(sources, payloads):
        for network in payload.get("members") or [payload]:
            config = network["config"]
            try:
                check_model_options(config["model"], config.get("model_options", {}), smallest_view)
            except ConfigError as error:
                raise ConfigError(f"teacher {source}: {error}") from None


def shared_normalization(sources: list[str], normalizations: list[Normalization]) -> Normalization:
    first = normalizations[0]
    for source, normalization in zip(sources[1:], normalizations[1:]):
        if normalization != first:
            raise FerlabError(f"teacher {source} normalises its input as {describe(normalization)}, "
                              f"teacher {sources[0]} as {describe(first)}; teachers of one student must see the same input")
    return first


def describe(normalization: Normalization) -> str:
    if normalization.kind != "standardize":
        return normalization.kind
    return f"standardize (mean {normalization.mean:.4f}, std {normalization.std:.4f})"


def freeze(model: nn.Module) -> None:
    """No gradients into a teacher: its weights never change, and backward skips it."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
