"""Training: ``train_one_epoch`` and ``fit``, learning rate as a pure function of the step.

Every random draw of epoch ``e`` (shuffle, augmentation, dropout) derives from ``(seed, e)``, so a
run resumed from its ``last.pt`` at an epoch boundary continues exactly as if never stopped.
"""

from __future__ import annotations

import copy
import csv
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ferlab import distributed
from ferlab.checkpoint import read_checkpoint, save_checkpoint
from ferlab.config import TrainConfig, config_to_dict
from ferlab.data.augment import AugmentPolicy, augment_batch, mix_batch, random_crop, random_erase, shrink
from ferlab.data.faceset import FaceSet
from ferlab.data.normalize import Normalization
from ferlab.errors import FerlabError
from ferlab.device import autocast_for, choose_device, reuse_freed_memory  # noqa: F401 - choose_device: part of this module's interface
from ferlab.distill import Teachers, distillation_loss, load_teachers, training_seconds
from ferlab.evaluation import infer, metrics
from ferlab.models import build_model
from ferlab.models.layers import crop_input
from ferlab.muon import Muon
from ferlab.outputs import written
from ferlab.progress import progress_bar
from ferlab.schedules import SCHEDULES


class TrainingDiverged(FerlabError):
    """The loss became NaN or infinite: nothing after it can be trusted, so the run stops."""


HISTORY_FIELDS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def cpu_warnings(preset: str | None, config: TrainConfig, device_type: str) -> list[str]:
    """What a training run would regret on a CPU (measured in BENCHMARKS.md)."""
    from ferlab.config import GPU_PRESETS

    if device_type != "cpu":
        return []
    warnings = []
    if preset in GPU_PRESETS:
        warnings.append(f"preset {preset} is sized for a GPU and will take hours on this CPU; "
                        "--preset cpu trains in about ten minutes")
    if config.compile:
        warnings.append("--compile made the training step slower on a CPU, not faster (1.23x slower on 2 cores), "
                        "after about a minute of compilation")
    return warnings


def lr_at(step: int, total_steps: int, config: TrainConfig) -> float:
    """Learning rate at optimiser step ``step`` of ``total_steps`` (before plateau scaling), from
    the schedule registry (``ferlab.schedules``)."""
    return SCHEDULES[config.schedule](step, total_steps, config.lr, config.warmup_fraction)


def plateau_scale(val_accuracies: list[float], factor: float, patience: int) -> float:
    """ReduceLROnPlateau as a pure function of the validation history: multiply by ``factor``
    each time accuracy has not improved for ``patience`` epochs (then start counting again)."""
    scale, best, waited = 1.0, -math.inf, 0
    for accuracy in val_accuracies:
        if accuracy > best:
            best, waited = accuracy, 0
        else:
            waited += 1
            if waited >= patience:
                scale, waited = scale * factor, 0
    return scale


def epochs_since_best(val_accuracies: list[float]) -> int:
    if not val_accuracies:
        return 0
    best = max(range(len(val_accuracies)), key=lambda i: (val_accuracies[i], -i))
    return len(val_accuracies) - 1 - best


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % (2 ** 63)


def augment_policy(config: TrainConfig) -> AugmentPolicy:
    if not config.augment:
        return AugmentPolicy(flip=False, rotate=0.0, shift=0.0, shear=0.0, zoom=0.0)
    return AugmentPolicy(config.flip, config.rotate, config.shift, config.shear, config.zoom)


def sgd(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                           weight_decay=config.weight_decay)


def adam_like(kind: type[torch.optim.Optimizer]):
    def make(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
        on_cuda = next(model.parameters()).is_cuda  # the fused kernel: one launch per step instead of several per tensor
        return kind(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=on_cuda or None)
    return make


def muon(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # The bf16 iteration everywhere: its exact spectral form was 1.04x the step's speed on the CPU
    # but not better on PublicTest over 3 seeds (BENCHMARKS.md, 2026-11-24), so the preset's
    # measured figures stay reproducible.
    return Muon.for_model(model, lr=config.lr, weight_decay=config.weight_decay)


# name -> factory; weight decay is decoupled in adamw and muon, L2 in adam and sgd.
OPTIMIZERS = {"adam": adam_like(torch.optim.Adam), "adamw": adam_like(torch.optim.AdamW), "sgd": sgd, "muon": muon}


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS[config.optimizer](model, config)


class WeightAverage:
    """Exponential moving average of the weights (and float buffers), updated after every step;
    evaluated and saved in place of the raw weights when ``config.ema > 0``."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False):
        self.decay, self.warmup, self.updates = decay, warmup, 0  # updates: steps averaged so far
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self._source: nn.Module | None = None
        self._floats: tuple[list, list] = ([], [])
        self._others: tuple[list, list] = ([], [])

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if model is not self._source:  # pair the tensors once: rebuilding state dicts every step costs time
            pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))
            floats = [(a, c) for a, c in pairs if a.is_floating_point()]
            others = [(a, c) for a, c in pairs if not a.is_floating_point()]
            self._floats = ([a for a, _ in floats], [c for _, c in floats])
            self._others = ([a for a, _ in others], [c for _, c in others])
            self._source = model
        # Without warm-up the average starts at the initial weights and lags far behind for thousands
        # of steps; with it, the first updates nearly copy the current weights.
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay
        self.updates += 1
        # Multi-tensor kernels instead of one launch per tensor: it matters for small nets on a GPU.
        torch._foreach_lerp_(*self._floats, 1.0 - decay)
        if self._others[0]:
            torch._foreach_copy_(*self._others)  # batch-norm step counters


def mixed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float,
                        partner: torch.Tensor | None = None, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy; for a mixed batch (``mix_batch``) each face's loss is keep * CE(label)
    + (1 - keep) * CE(partner's label)."""
    if partner is None:
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    own = F.cross_entropy(logits, labels, label_smoothing=label_smoothing, reduction="none")
    other = F.cross_entropy(logits, labels[partner], label_smoothing=label_smoothing, reduction="none")
    return (keep * own + (1 - keep) * other).mean()


def view_side_at(epoch: int, config: TrainConfig) -> int:
    """Side in pixels of the training views in 0-based ``epoch``. With progressive resizing the
    views start shrunk to ``progressive_start`` and grow linearly, in steps of 16 pixels (sides
    that halve cleanly through fastnet's four pools), to the full ``crop`` at epoch
    ``progressive_epochs``: early epochs learn coarse features on a fraction of the pixels (32
    pixels: 2.05x the images/s of 48 on the 2-core CPU, 40: only 1.27x), the last ones fit the
    size the model is evaluated at."""
    if not config.progressive_start or epoch >= config.progressive_epochs:
        return config.crop
    side = config.progressive_start + (config.crop - config.progressive_start) * epoch / config.progressive_epochs
    return min(config.crop, max(config.progressive_start, int(side) // 16 * 16))


def training_batch(images: torch.Tensor, labels: torch.Tensor, index: torch.Tensor, config: TrainConfig,
                   normalization: Normalization, generator: torch.Generator, side: int | None = None) -> tuple:
    """What one optimiser step trains on, from the (N, 48, 48) uint8 ``images`` at ``index``: each
    face as ``config.views`` independently augmented views (batch augmentation: the views of a
    face sit side by side), each warped, cropped to a random ``config.crop`` window, shrunk to
    ``side`` pixels (progressive resizing; default: not shrunk), normalised, mixed and erased.
    Returns (x, y, partner, keep): views (B * views, 1, side, side), their labels, and the mixing
    partners and label weights (None when nothing is mixed)."""
    if config.views > 1:
        index = index.repeat_interleave(config.views)
    x = augment_batch(images[index].unsqueeze(1).float(), augment_policy(config), generator)  # 0..255
    if config.augment:
        x = random_crop(x, config.crop, generator)
    if side is not None and side < config.crop:  # not when it is the crop: without augmentation faces stay whole
        x = shrink(x, side)
    x = normalization.apply(x)
    y = labels[index]
    partner, keep = None, None
    if config.augment and config.mix != "none":
        x, partner, keep = mix_batch(x, config.mix, config.mix_probability, generator, offset=config.views)
    if config.augment:
        x = random_erase(x, config.erase, generator)  # erased pixels = 0: the training mean once standardised
    if config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y, partner, keep


def batch_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, partner: torch.Tensor | None,
               keep: torch.Tensor | None, config: TrainConfig, teachers: Teachers | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's logits and loss: cross-entropy with the (mixed, smoothed) labels, blended with the
    teachers' soft targets on the same views when there are teachers."""
    logits = model(x)
    loss = mixed_cross_entropy(logits.float(), y, config.label_smoothing, partner, keep)
    if teachers is not None:
        soft = distillation_loss(logits.float(), teachers.soft_targets(x, config.distill_temperature, config.teacher_flip),
                                 config.distill_temperature)
        loss = config.hard_label_weight * loss + (1 - config.hard_label_weight) * soft
    return logits, loss


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor, *,
                    config: TrainConfig, normalization: Normalization, generator: torch.Generator,
                    lr_for_step: Callable[[int], float], description: str = "", progress: bool = True,
                    average: WeightAverage | None = None, batch_size: int | None = None,
                    steps: int | None = None, teachers: Teachers | None = None, side: int | None = None) -> dict:
    """One pass over (N, 48, 48) uint8 ``images`` (already on the model's device) in shuffled
    batches of ``batch_size`` faces (default ``config.batch_size``; ``training_batch`` makes their
    views); the last partial batch is dropped (batch norm needs more than one face, and the
    shuffle differs every epoch). ``steps``: how many batches (default: as many as fit; ranks of a
    distributed run agree on one number). ``side``: shrink the views to this many pixels
    (progressive resizing, ``view_side_at``). With ``teachers`` the loss blends the true labels with
    their soft targets on the same views (``ferlab.distill``). Returns mean loss, accuracy and
    seconds."""
    device = images.device
    reuse_freed_memory(device)
    batch_size = min(batch_size or config.batch_size, images.shape[0])
    steps = steps or images.shape[0] // batch_size
    order = torch.randperm(images.shape[0], generator=generator, device=generator.device)[: steps * batch_size].to(device)
    model.train()
    started = time.perf_counter()
    total_loss = torch.zeros((), device=device)
    total_correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    bar = progress_bar(range(steps), desc=description, leave=False, show=progress, unit="step")
    for step in bar:
        x, y, partner, keep = training_batch(images, labels, order[step * batch_size:(step + 1) * batch_size],
                                             config, normalization, generator, side)
        for group in optimizer.param_groups:
            group["lr"] = lr_for_step(step)
        with autocast_for(device, config.mixed_precision):
            logits, loss = batch_loss(model, x, y, partner, keep, config, teachers)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if average is not None:
            average.update(model)
        seen += y.shape[0]
        total_loss += loss.detach() * y.shape[0]
        total_correct += (logits.argmax(1) == y).sum()
        if progress and (step % 10 == 0 or step == steps - 1):
            bar.set_postfix(loss=f"{total_loss.item() / seen:.3f}", acc=f"{total_correct.item() / seen:.3f}")
    return {"loss": total_loss.item() / seen, "accuracy": total_correct.item() / seen,
            "seconds": time.perf_counter() - started}


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, normalization: Normalization,
             config: TrainConfig) -> dict:
    logits = infer(model, images, normalization, batch_size=config.eval_batch_size,
                   mixed_precision=config.mixed_precision, channels_last=config.channels_last)
    result = metrics(logits, labels.cpu())
    return {"loss": result["loss"], "accuracy": result["accuracy"]}


def write_history(path: Path, history: list[dict]) -> None:
    with written(path) as temporary, open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        for row in history:
            writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in HISTORY_FIELDS})


def read_initial_checkpoint(config: TrainConfig) -> dict:
    """The checkpoint ``config.init`` names, refused in one line when its architecture is not the
    run's (a preset's model options, merged in, can make it differ)."""
    from ferlab.checkpoint import read_checkpoint as read, resolve_checkpoint

    payload = read(resolve_checkpoint(config.init))
    source = payload["config"]
    if source["model"] != config.model or source.get("model_options", {}) != config.model_options:
        raise FerlabError(f"--init {config.init}: its architecture ({source['model']} {source.get('model_options', {})}) "
                          f"differs from this run's ({config.model} {config.model_options})")
    return payload


def load_initial_weights(model: nn.Module, config: TrainConfig) -> tuple[Normalization, dict]:
    """Copy the weights of ``config.init`` (a run folder, checkpoint or 'default') into ``model``;
    return that model's input normalisation (fine-tuning must feed the weights what they were
    trained on, not statistics of the new faces) and the record of where the weights came from:
    their source and whole training time, part of this run's own."""
    payload = read_initial_checkpoint(config)
    model.load_state_dict(payload["model"])  # float16 (exported) weights are cast on copy
    return Normalization(**payload["normalization"]), {"source": config.init, "train_seconds": training_seconds(payload)}


def start_training(config: TrainConfig, train_images: torch.Tensor, device: torch.device, resume_from: Path | None,
                   steps_per_epoch: int | None = None, teachers: Teachers | None = None):
    """The model (seeded), optimiser, input normalisation, weight average (or None), history and
    starting-weights record (``load_initial_weights``; None without ``init``) a run starts from:
    fresh, or as saved in ``resume_from`` (a ``last.pt``). A student takes its teachers'
    normalisation: both see the very same views."""
    torch.manual_seed(config.seed)
    model = crop_input(build_model(config.model, **config.model_options), config.crop).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    initial = None
    if resume_from is None:  # a resumed run takes its normalisation from last.pt below
        if config.init:
            normalization, initial = load_initial_weights(model, config)
        else:
            normalization = teachers.normalization if teachers is not None else Normalization.fit(config.normalization, train_images)
        if teachers is not None and normalization != teachers.normalization:
            raise FerlabError(f"--init {config.init} normalises its input as {normalization}, the teachers as "
                              f"{teachers.normalization}; a student and its teachers must see the same input")
    optimizer = make_optimizer(model, config)
    average = WeightAverage(model, config.ema, config.ema_warmup) if config.ema > 0 else None
    history: list[dict] = []
    if resume_from is not None:
        state = read_checkpoint(resume_from)
        model.load_state_dict(state.get("train_model", state["model"]))
        if average is not None:
            average.model.load_state_dict(state["model"])
            steps = steps_per_epoch or len(train_images) // min(config.batch_size, len(train_images))
            average.updates = len(state["history"]) * steps
        optimizer.load_state_dict(state["optimizer"])
        normalization = Normalization(**state["normalization"])
        history = list(state["history"])
        initial = state.get("init")
    return model, optimizer, normalization, average, history, initial


def check_training_faces(faces) -> None:
    """Data that can train a model: at least two training faces and one validation face."""
    sizes = faces.split_sizes()  # counted: a split is a copy of its faces
    train, val = sizes["train"], sizes["val"]
    if train < 2 or val < 1:
        raise FerlabError(f"{faces.source}: need training and validation faces, got {train} and {val}")


def fit(config: TrainConfig, faces: FaceSet, run_dir: Path, *, data_info: dict | None = None,
        resume: bool = False, progress: bool = True, stop_after: int | None = None,
        log: Callable[[str], None] = print, on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train on the ``train`` split, choose the epoch on ``val``; write ``last.pt`` (resumable:
    weights, optimiser, raw weights under an EMA) every ``config.checkpoint_every`` epochs and
    when the call ends, ``best.pt`` (weights only) whenever validation accuracy improves, and
    ``history.csv`` after every epoch.

    ``resume`` continues from ``run_dir/last.pt``. ``stop_after`` ends the call after that many
    epochs of this call (to test interruption). ``on_epoch`` hears each epoch's history row once
    its files are written (a sweep reports it to its scheduler). Returns a summary dict, the
    history included.
    """
    device = choose_device(config.device)
    world = distributed.join(device)  # one process unless launched by torchrun (ferlab.distributed)
    device = distributed.rank_device(device, world)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels once
    check_training_faces(faces)
    train, val = faces.split("train"), faces.split("val")
    batch_size = distributed.per_rank_batch(min(config.batch_size, len(train)), world, len(train))
    steps_per_epoch = (len(train) // world.size) // batch_size  # equal on every rank
    teachers = load_teachers(config.teachers, device) if config.teachers else None
    model, optimizer, normalization, average, history, initial = start_training(
        config, train.images, device, run_dir / "last.pt" if resume else None, steps_per_epoch, teachers)
    step_model = model if world.size == 1 else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    # Optional compilation; the uncompiled module keeps the weights and is what gets saved.
    step_model = torch.compile(step_model, mode=config.compile_mode) if config.compile else step_model
    shard = slice(world.rank, None, world.size)  # this rank's faces; all of them in one process
    train_images, train_labels = train.images[shard].to(device), train.labels[shard].to(device)
    val_images, val_labels = val.images.to(device), val.labels
    total_steps = steps_per_epoch * config.epochs
    progress = progress and world.main
    base = checkpoint_base(config, normalization, data_info or {"source": faces.source}, teachers, initial)
    epochs_run, stopped_early, saved_epoch = 0, False, len(history)
    weights: dict = {}
    if resume and world.main:  # last.pt is the truth: an interruption after its write but before history.csv's left one row short
        write_history(run_dir / "history.csv", history)

    def save_last(weights: dict) -> None:
        nonlocal saved_epoch
        saved_epoch = weights["epoch"]
        if not world.main:
            return
        resumable = {**weights, "optimizer": optimizer.state_dict()}
        if average is not None:
            resumable["train_model"] = model.state_dict()  # the raw weights, to resume training from
        save_checkpoint(run_dir / "last.pt", resumable)

    for epoch in range(len(history), config.epochs):
        val_history = [row["val_accuracy"] for row in history]
        if stops_early(val_history, config):
            log(f"early stop: no validation gain for {config.early_stop_patience} epochs")
            stopped_early = True
            break
        if stop_after is not None and epochs_run >= stop_after:
            break
        scale = plateau_scale(val_history, config.plateau_factor, config.plateau_patience) if config.schedule == "plateau" else 1.0
        torch.manual_seed(epoch_seed(config.seed, epoch))  # dropout of this epoch
        # Shuffle + augmentation, drawn on the training device (the same stream as before on the CPU).
        generator = torch.Generator(device=device).manual_seed(epoch_seed(config.seed, epoch) + 1 + world.rank)
        first = epoch * steps_per_epoch
        stats = train_one_epoch(
            step_model, optimizer, train_images, train_labels, config=config, normalization=normalization,
            generator=generator, lr_for_step=lambda step: scale * lr_at(first + step, total_steps, config),
            description=f"epoch {epoch + 1}/{config.epochs}", progress=progress, average=average,
            batch_size=batch_size, steps=steps_per_epoch, teachers=teachers, side=view_side_at(epoch, config))
        stats["loss"], stats["accuracy"] = distributed.mean_over_ranks([stats["loss"], stats["accuracy"]], world, device)
        evaluated = average.model if average is not None else model
        started = time.perf_counter()
        val_stats = evaluate(evaluated, val_images, val_labels, normalization, config)
        row = {"epoch": epoch + 1, "train_loss": stats["loss"], "train_accuracy": stats["accuracy"],
               "val_loss": val_stats["loss"], "val_accuracy": val_stats["accuracy"],
               "lr": scale * lr_at(first + steps_per_epoch - 1, total_steps, config),
               "seconds": stats["seconds"] + time.perf_counter() - started}
        check_finite(row, run_dir)
        history.append(row)
        improved = row["val_accuracy"] > max(val_history, default=-1.0)
        weights = {**base, "model": evaluated.state_dict(), "epoch": epoch + 1, "history": history,
                   "metrics": {"val_accuracy": row["val_accuracy"], "val_loss": row["val_loss"]}}
        if improved and world.main:
            save_checkpoint(run_dir / "best.pt", weights)  # weights only: best.pt is for using, last.pt for resuming
        if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs:
            save_last(weights)
        if world.main:
            write_history(run_dir / "history.csv", history)
        log(epoch_line(row, config.epochs, improved))
        epochs_run += 1
        if on_epoch is not None:
            on_epoch(row)
    if weights and saved_epoch != len(history):  # stopped between checkpoint_every writes
        save_last(weights)
    if world.main:
        write_history(run_dir / "history.csv", history)  # agrees with last.pt, however the loop ended
    distributed.barrier(world)  # every rank returns once rank 0's files are written
    return training_summary(history, base, finished=stopped_early or len(history) >= config.epochs)


def checkpoint_base(config: TrainConfig, normalization: Normalization, data_info: dict, teachers: Teachers | None,
                    initial: dict | None) -> dict:
    """What every checkpoint of a run holds besides its weights: the resolved config, the input
    normalisation, the data, and the training behind it (teachers, starting weights)."""
    base = {"config": config_to_dict(config), "normalization": normalization.to_dict(), "data": data_info}
    if teachers is not None:  # the student's card: who taught it, and what their training cost
        base["distillation"] = teachers.card(config)
    if initial is not None:  # fine-tuned or continued: the starting weights' training is part of this model's
        base["init"] = initial
    return base


def stops_early(val_history: list[float], config: TrainConfig) -> bool:
    return bool(config.early_stop_patience) and epochs_since_best(val_history) >= config.early_stop_patience


def check_finite(row: dict, run_dir: Path) -> None:
    """Stop a run whose epoch ended with a NaN or infinite loss, naming which loss and what to try."""
    for name, key in (("training", "train_loss"), ("validation", "val_loss")):
        if not math.isfinite(row[key]):
            raise TrainingDiverged(
                f"epoch {row['epoch']}: the {name} loss became {row[key]} (learning rate {row['lr']:.3g}); the run "
                f"stopped, {run_dir} keeps the last good checkpoint. Try a lower --lr")


def epoch_line(row: dict, epochs: int, improved: bool) -> str:
    return (f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f} | "
            f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f}{' *' if improved else ''} | "
            f"lr {row['lr']:.2e} | {row['seconds']:.1f}s")


def training_summary(history: list[dict], base: dict, finished: bool) -> dict:
    """``fit``'s answer: the history, the epoch chosen on validation, and the training time on record."""
    best = max(history, key=lambda r: r["val_accuracy"]) if history else None
    summary = {"history": history, "epochs": len(history), "best_epoch": best["epoch"] if best else None,
               "best_val_accuracy": best["val_accuracy"] if best else None,
               "train_seconds": sum(r["seconds"] for r in history), "finished": finished}
    if "distillation" in base:
        summary["teachers_train_seconds"] = base["distillation"]["teachers_train_seconds"]
    if "init" in base:
        summary["init_train_seconds"] = base["init"]["train_seconds"]
    return summary
