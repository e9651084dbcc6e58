"""Training configuration: one frozen dataclass, named presets, YAML/TOML files, flag overrides.

Resolution order: defaults <- preset <- config file <- command-line flags. Unknown keys are
errors. The resolved config is written into the run folder and into every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ferlab.errors import FerlabError, brief
from ferlab.labels import IMAGE_SIZE
from ferlab.schedules import SCHEDULES

# This module stays free of PyTorch (the command line builds its --help from it): the model
# registry is imported where a config is checked; the names of registries that live beside
# PyTorch (optimisers, normalisations, mixers) are spelled out here, and tests/test_config.py
# checks them against training.OPTIMIZERS, data.normalize.NORMALIZERS and data.augment.MIXERS.
MIX_MODES = ("mixup", "cutmix")


class ConfigError(FerlabError, ValueError):
    """A config file or flag that cannot be used."""


@dataclass(frozen=True)
class TrainConfig:
    # model
    model: str = "fastnet"
    model_options: dict = field(default_factory=dict)  # passed to build_model, e.g. {dropout: 0.3}
    # optimisation
    epochs: int = 30
    batch_size: int = 128            # images per step
    optimizer: str = "adamw"         # adam | adamw | sgd | muon (hidden weight matrices; AdamW for the rest)
    lr: float = 2e-3                 # peak learning rate
    weight_decay: float = 5e-4       # decoupled for adamw and muon (times lr), L2 for adam/sgd
    momentum: float = 0.9            # sgd only
    nesterov: bool = True            # sgd only
    label_smoothing: float = 0.0     # cross-entropy target smoothing
    ema: float = 0.0                 # per-step decay of a weight average used for evaluation; 0 = off
    ema_warmup: bool = False         # decay min(ema, (1 + t) / (10 + t)) at update t, so early averages follow training
    # learning-rate schedule
    schedule: str = "onecycle"       # none | plateau | cosine | onecycle
    warmup_fraction: float = 0.2     # onecycle/cosine: fraction of all steps spent rising to lr
    plateau_factor: float = 0.5      # plateau: lr multiplier when val accuracy stalls
    plateau_patience: int = 3        # plateau: epochs without val gain before the lr drops
    early_stop_patience: int = 0     # epochs without val gain before stopping; 0 = never stop early
    # input
    normalization: str = "standardize"  # none (raw 0..255) | rescale ([0,1]) | standardize (train mean/std)
    augment: bool = True             # master switch for the parts below
    flip: bool = True                # random horizontal flip
    rotate: float = 20.0             # degrees, uniform in [-rotate, rotate]
    shift: float = 0.2               # fraction of the side, uniform in [-shift, shift] on each axis
    shear: float = 10.0              # degrees, uniform in [-shear, shear]
    zoom: float = 0.2                # scale uniform in [1 - zoom, 1 + zoom]
    erase: float = 0.0               # probability per face of random erasing (one rectangle, 2-25% of the face)
    mix: str = "none"                # none | mixup | cutmix: blend a face with the next one in the batch
    mix_probability: float = 0.5     # share of faces mixed when mix is on; each at a share uniform in [0, 1]
    crop: int = 48                   # pixels: side of the random square window each training view takes (48: the whole face)
    views: int = 1                   # batch augmentation: independently augmented views of each face in its step
    progressive_start: int = 0       # pixels: progressive resizing; the first epoch's views are shrunk to this side,
                                     # which grows to `crop` over `progressive_epochs` (in steps of 16); 0 = off
    progressive_epochs: int = 0      # epochs over which the views grow back to full size
    # distillation (ferlab distill): the loss blends the true labels with the teachers' softened outputs
    teachers: list = field(default_factory=list)  # run folders or checkpoints; their mean probabilities are the soft targets
    distill_temperature: float = 4.0  # divides teacher and student logits in the soft-target loss (scaled by its square)
    hard_label_weight: float = 0.5   # share of the loss on the true labels; the rest is on the teachers' soft targets
    teacher_flip: bool = False       # soft targets averaged over each view and its mirror image (the teachers' flip TTA)
    # run
    seed: int = 0                    # weights, shuffling, augmentation and dropout all derive from it
    device: str = "auto"             # auto (cuda when present) | cpu | cuda
    mixed_precision: bool = True     # bf16 autocast on CUDA and on CPUs with native bf16
    channels_last: bool = True       # memory layout for convolutions
    compile: bool = False            # torch.compile the training step's model (slow to start; 1.23x slower on a 2-core CPU)
    compile_mode: str = "default"    # torch.compile mode; reduce-overhead adds CUDA graphs (fewer kernel launches)
    val_fraction: float = 0.1        # sources without PublicTest: stratified share of train held out
    eval_batch_size: int = 512       # images per inference batch
    checkpoint_every: int = 1        # epochs between writes of last.pt (the final epoch is always written)
    init: str = ""                   # start from this model's weights and normalisation (run, checkpoint, 'default')

    def __post_init__(self):
        check_config(self)


CHOICES = {  # from the registries where they are plain data; the others are checked by tests/test_config.py
    "optimizer": ("adam", "adamw", "sgd", "muon"),
    "schedule": tuple(SCHEDULES),
    "normalization": ("none", "rescale", "standardize"),
    "mix": ("none", *MIX_MODES),
    "compile_mode": ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    "device": ("auto", "cpu", "cuda"),
}

# Named starting points. `cpu` is the main job's recipe: sized to train on the full Training split
# in about ten minutes on a 2-core CPU. Its fastnet has no stem and pools before each stage's norm
# (1.39-1.41x the images/s). Muon learns faster per epoch than AdamW, so 12 epochs of it beat 15 of
# AdamW in 0.96x the time (617 s against 643 s the same day): PublicTest 65.4 +- 0.3% (68.0 +- 0.5%
# with the flip-zoom TTA chosen there) against 65.0 +- 0.3% (66.7 +- 0.6%), seeds 0-2, 2026-11-24.
# Its augmentation is a quarter of the seed policy's strength: in 12 epochs, PublicTest 64.8%
# (66.5%) against 64.0% (65.5%) at half strength and 62.3% at full strength (AdamW; with Muon, half
# strength tied plain and lost with TTA); label smoothing 0.2, 40-pixel crops and progressive
# resizing lost (one seed each, 2026-11-22 and 2026-11-24; chosen on PublicTest). Batches of 256 at
# 3e-3 x sqrt(2) (1.07x the images/s: half the Muon orthogonalisations per face) gave PublicTest
# 65.5 +- 1.1% (67.6 +- 0.6%) in 678 +- 19 s, within one std of batch 128, seeds 0-2, 2026-11-24.
# `seed-cnn` is the course reports' recipe.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"model": "fastnet", "model_options": {"stem": False, "pool_first": True}, "epochs": 12, "batch_size": 256,
            "optimizer": "muon", "lr": 4.2e-3, "schedule": "onecycle", "label_smoothing": 0.1,
            "rotate": 5.0, "shift": 0.05, "shear": 2.5, "zoom": 0.05},
    "seed-cnn": {"model": "cnn", "epochs": 60, "batch_size": 128, "optimizer": "adam", "lr": 1e-3,
                 "weight_decay": 0.0, "schedule": "plateau", "plateau_factor": 0.5, "plateau_patience": 5,
                 "early_stop_patience": 12},
    # GPU recipes, chosen on PublicTest by benchmarks/tune.py on an H100 (table in
    # benchmarks/results/tune-gpu-2026-11-22.md): fastnet 64..512 wide with light augmentation and
    # a weight EMA ranked first at a 35-second schedule; `best` runs it for ~3 minutes, `fast` at
    # batch 512 (1.4x the images/s) for ~25 seconds. Accuracy and wall time: BENCHMARKS.md.
    "fast": {"model": "fastnet", "model_options": {"widths": [64, 128, 256, 512], "dropout": 0.4}, "epochs": 35,
             "batch_size": 512, "optimizer": "adamw", "lr": 4e-3, "weight_decay": 5e-4, "schedule": "onecycle",
             "warmup_fraction": 0.2, "label_smoothing": 0.1, "ema": 0.998, "checkpoint_every": 35,
             "rotate": 10.0, "shift": 0.1, "shear": 5.0, "zoom": 0.1},
    "best": {"model": "fastnet", "model_options": {"widths": [64, 128, 256, 512], "dropout": 0.4}, "epochs": 150,
             "batch_size": 256, "optimizer": "adamw", "lr": 3e-3, "weight_decay": 5e-4, "schedule": "onecycle",
             "warmup_fraction": 0.2, "label_smoothing": 0.1, "ema": 0.999, "checkpoint_every": 10,
             "rotate": 10.0, "shift": 0.1, "shear": 5.0, "zoom": 0.1},
    # The other families of the `families` ensemble (ENSEMBLES): the 8-convolution VGG and the
    # CIFAR-style ResNet-18 of the strongest from-scratch papers, trained like `best` on random
    # 44-pixel crops with random erasing, as those papers do. NOT YET RUN ON A GPU: 150 epochs is
    # sized from their arithmetic (vgg8 about best's, resnet18 about twice per face) to keep the
    # three members' training near 15 minutes on an H100; `benchmarks/gpu_session.py speed` projects them.
    "best-vgg8": {"model": "vgg8", "epochs": 150, "batch_size": 256, "optimizer": "adamw", "lr": 3e-3,
                  "weight_decay": 5e-4, "schedule": "onecycle", "warmup_fraction": 0.2, "label_smoothing": 0.1,
                  "ema": 0.999, "checkpoint_every": 10, "rotate": 10.0, "shift": 0.1, "shear": 5.0, "zoom": 0.1,
                  "crop": 44, "erase": 0.5},
    "best-resnet18": {"model": "resnet18", "epochs": 150, "batch_size": 256, "optimizer": "adamw", "lr": 3e-3,
                      "weight_decay": 5e-4, "schedule": "onecycle", "warmup_fraction": 0.2, "label_smoothing": 0.1,
                      "ema": 0.999, "checkpoint_every": 10, "rotate": 10.0, "shift": 0.1, "shear": 5.0, "zoom": 0.1,
                      "crop": 44, "erase": 0.5},
    "smoke": {"model": "fastnet", "model_options": {"widths": [8, 16, 16, 32]}, "epochs": 2, "batch_size": 32,
              "mixed_precision": False},
    # Fine-tuning a trained model (--init) on a few labelled faces: a tenth of the cpu preset's
    # learning rate, a short warm-up and a cosine decay, light augmentation; the architecture comes
    # from the --init model.
    "finetune": {"epochs": 10, "batch_size": 64, "optimizer": "adamw", "lr": 3e-4, "schedule": "cosine",
                 "warmup_fraction": 0.1, "label_smoothing": 0.1, "rotate": 10.0, "shift": 0.1, "shear": 5.0, "zoom": 0.1},
}


# Presets sized for a GPU: on a CPU they take hours (`best`: 150 epochs of a 7.9 M-parameter net).
GPU_PRESETS = ("fast", "best", "best-vgg8", "best-resnet18")

# Ensembles of presets, one member each, of different families (issue 15: the architecture-diverse
# ensembles of the literature gained 2.5 points where same-recipe seeds gained 0.6). Train each
# member (`ferlab train --preset`), then combine them (`ferlab ensemble RUN... -o ensemble.pt`);
# `benchmarks/presets.py --ensemble families` does both and measures the combination.
ENSEMBLES: dict[str, tuple[str, ...]] = {"families": ("best", "best-vgg8", "best-resnet18")}


def check_config(config: TrainConfig) -> None:
    from ferlab.models import list_models, model_options

    for key, allowed in CHOICES.items():
        if getattr(config, key) not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {brief(getattr(config, key))}")
    if config.model not in list_models():
        raise ConfigError(f"unknown model {brief(config.model)}; available: {', '.join(list_models())}")
    unknown = sorted(set(config.model_options) - set(model_options(config.model)))
    if unknown:
        raise ConfigError(f"model {config.model!r} has no option {', '.join(unknown)}; "
                          f"its options: {', '.join(model_options(config.model))}")
    for key in ("epochs", "batch_size", "eval_batch_size", "checkpoint_every", "views"):
        if getattr(config, key) < 1:
            raise ConfigError(f"{key} must be at least 1, got {brief(getattr(config, key))}")
    if config.epochs > MAX_EPOCHS:
        raise ConfigError(f"epochs must be at most {MAX_EPOCHS:,} (the longest published FER2013 schedules run 300), "
                          f"got {brief(config.epochs)}")
    if config.views > MAX_VIEWS:
        raise ConfigError(f"views must be at most {MAX_VIEWS} (each view is a whole image in the step), got {brief(config.views)}")
    if not MIN_CROP <= config.crop <= IMAGE_SIZE:
        raise ConfigError(f"crop must be a side in pixels from {MIN_CROP} to {IMAGE_SIZE} (the whole face), got {brief(config.crop)}")
    check_progressive(config)
    if not all(isinstance(teacher, str) and teacher for teacher in config.teachers):
        raise ConfigError(f"teachers must be run folders or checkpoint files, got {brief(config.teachers)}")
    for key, (low, high, closed_high, meaning) in RANGES.items():
        value = getattr(config, key)
        finite = not isinstance(value, float) or math.isfinite(value)  # an int of 400 digits has no float (OverflowError)
        inside = finite and low <= value and (value <= high if closed_high else value < high)
        if not inside or (key in POSITIVE and value == 0):
            raise ConfigError(f"{key} must be {meaning}, got {brief(value)}")
    if not 0 <= config.seed <= MAX_SEED:  # 1e20 was an OverflowError in torch.manual_seed, after the data was read
        raise ConfigError(f"seed must be a whole number from 0 to 2**63 - 1, got {brief(config.seed)}")
    check_student_options(config)
    check_model_options(config.model, config.model_options, smallest_view(config))


def check_student_options(config: TrainConfig) -> None:
    """A student's options (``ferlab distill``) set without teachers are refused: ``train
    --distill-temperature 2`` trained on the labels alone without a word."""
    for key in STUDENT_KEYS:
        if not config.teachers and getattr(config, key) != FIELDS[key].default:
            raise ConfigError(f"{key} {brief(getattr(config, key))} is an option of a student, and there are no teachers "
                              "(ferlab distill TEACHER... --student MODEL)")


def smallest_view(config: TrainConfig) -> int:
    """Side in pixels of the smallest view the model trains on: the progressive start, else the crop."""
    return config.progressive_start or config.crop


def check_progressive(config: TrainConfig) -> None:
    if not config.progressive_start and not config.progressive_epochs:
        return
    if not config.progressive_start:  # the message named progressive_start's 0 and not the option given
        raise ConfigError(f"progressive_epochs {brief(config.progressive_epochs)} needs progressive_start, the first epoch's "
                          f"side in pixels ({MIN_CROP} to crop, {config.crop})")
    if not MIN_CROP <= config.progressive_start <= config.crop:
        raise ConfigError(f"progressive_start must be a side in pixels from {MIN_CROP} to crop ({config.crop}), "
                          f"or 0 for no progressive resizing, got {brief(config.progressive_start)}")
    if not 1 <= config.progressive_epochs <= config.epochs:
        raise ConfigError(f"progressive_epochs must be from 1 to epochs ({config.epochs}) with progressive_start set, "
                          f"got {brief(config.progressive_epochs)}")


def check_model_options(model: str, options: dict, crop: int = IMAGE_SIZE) -> None:
    """Build the model on the meta device (no memory, no time) so that a bad option fails here,
    before a run folder exists, rather than in the first training step. A model trained on
    ``crop``-pixel windows must also take them (and whole faces, at inference)."""
    import torch

    from ferlab.models import build_model

    try:
        with torch.device("meta"):
            built = build_model(model, **{k: v for k, v in options.items() if k != "pretrained"})
    except Exception as error:  # noqa: BLE001 - a factory given bad values raises anything
        shown = ", ".join(f"{k}={brief(v)}" for k, v in options.items())
        raise ConfigError(f"model {model!r} cannot be built with {shown or 'its defaults'}: "
                          f"{error.__class__.__name__}: {str(error)[:120]}") from None
    if crop == IMAGE_SIZE:
        return
    try:
        with torch.device("meta"):
            built(torch.zeros(2, 1, crop, crop))
    except Exception:  # noqa: BLE001 - a layer that needs 48x48 input fails in its own way
        raise ConfigError(f"model {model!r} takes only whole {IMAGE_SIZE}x{IMAGE_SIZE} faces, "
                          f"not {crop}-pixel crops or shrunk views (its head is sized for 48 pixels; "
                          "models with global pooling take both)") from None


# Numeric options: key -> (low, high, whether high itself is allowed, what a user reads).
INF = math.inf
RANGES = {
    "lr": (0.0, INF, False, "a positive finite number"),
    "weight_decay": (0.0, INF, False, "a finite number >= 0"),
    "momentum": (0.0, 1.0, False, "in [0, 1)"),
    "label_smoothing": (0.0, 1.0, False, "in [0, 1)"),
    "ema": (0.0, 1.0, False, "in [0, 1) (0 turns the average off)"),
    "warmup_fraction": (0.0, 1.0, True, "in [0, 1]"),
    "plateau_factor": (0.0, 1.0, True, "in (0, 1]"),
    "plateau_patience": (0, INF, False, "an integer >= 0"),
    "early_stop_patience": (0, INF, False, "an integer >= 0 (0 never stops early)"),
    "rotate": (0.0, 180.0, True, "in [0, 180] degrees"),
    "shift": (0.0, 1.0, False, "in [0, 1) of the side"),
    "shear": (0.0, 90.0, False, "in [0, 90) degrees"),
    "zoom": (0.0, 1.0, False, "in [0, 1)"),
    "erase": (0.0, 1.0, True, "a probability in [0, 1]"),
    "mix_probability": (0.0, 1.0, True, "a probability in [0, 1]"),
    "distill_temperature": (0.0, 100.0, True, "a positive number up to 100"),  # 1e20: T**2 overflowed to inf
    "hard_label_weight": (0.0, 1.0, True, "in [0, 1] (1: the true labels only)"),
    "val_fraction": (0.0, 1.0, False, "in (0, 1)"),
}
POSITIVE = {"lr", "plateau_factor", "val_fraction", "distill_temperature"}  # where the low end itself is not allowed
MIN_CROP = 24  # pixels: smaller windows cut whole facial features away
MAX_VIEWS = 64  # views per face: the papers use 5-10; 10,000 would ask for 100+ GiB in one step
MAX_SEED = 2 ** 63 - 1  # torch.manual_seed's range, and epoch_seed's
STUDENT_KEYS = ("distill_temperature", "hard_label_weight", "teacher_flip")  # options that act only with teachers
MAX_EPOCHS = 10_000  # a typo's extra zeros would otherwise train for ever at a learning rate near 0


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def coerce(key: str, value: Any, where: str) -> Any:
    """Check a value against the field's type (ints may stand for floats)."""
    if key not in FIELDS:
        raise ConfigError(f"{where}: unknown key {brief(key)}; valid keys: {', '.join(FIELDS)}")
    default = FIELDS[key].default if FIELDS[key].default is not dataclasses.MISSING else FIELDS[key].default_factory()
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true or false, got {brief(value)}")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: {key} must be {kind.__name__}, got {brief(value)}")
    return value


def read_text_file(path: str | Path) -> str:
    """A settings file's text (config, sweep, experiment), or a ConfigError in one line: missing,
    unreadable, not a regular file, not UTF-8."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, or a FIFO that would block the read
        raise ConfigError(f"{path}: not a regular file")
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start})") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    text = read_text_file(path)
    if path.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:  # its message names the line and column
            raise ConfigError(f"{path}: not valid TOML: {str(error).splitlines()[0]}") from None
        except ValueError:  # int() refuses numbers of over 4,300 digits
            raise ConfigError(f"{path}: not valid TOML: {TOO_LONG}") from None
    else:
        data = parse_yaml(text, path)
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values")
    return {key: coerce(key, value, str(path)) for key, value in data.items()}


TOO_LONG = "a number of more digits than Python reads (4,300)"


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping: PyYAML keeps the last
    without a word (``lr: 0.1`` ... ``lr: 0.5`` trained at 0.5), where YAML 1.2 and TOML refuse it.
    Keys a merge (``<<: *base``) brings in may still be overridden, as YAML intends."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            lines = {}  # key -> the line it was first given on (0-based)
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in lines:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"key {brief(key)} given twice, first on line {lines[key] + 1}", key_node.start_mark)
                    lines[key] = key_node.start_mark.line
                except TypeError:  # an unhashable key: PyYAML's own error says so
                    continue
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load``, but a key given twice in a mapping is an error (``UniqueKeyLoader``)."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def parse_yaml(text: str, path: str | Path, lines: bool = True) -> Any:
    """YAML text as Python values, or a ConfigError naming the file (``path``: any name of where
    the text came from) and, with ``lines``, the line of its first problem (``path:3: not valid
    YAML (...)``), as data errors do."""
    try:
        return load_yaml(text)
    except ValueError:  # PyYAML hands its numbers to int(), which refuses over 4,300 digits
        raise ConfigError(f"{path}: not valid YAML ({TOO_LONG})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None and lines else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({problem})") from None


def resolve_config(preset: str | None = None, file: str | Path | None = None,
                   overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults <- preset <- config file <- overrides (flags; None values are ignored)."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; available: {', '.join(PRESETS)}")
    preset_values = PRESETS[preset] if preset is not None else {}
    file_values = read_config_file(file) if file is not None else {}
    flag_values = {k: coerce(k, v, "flag") for k, v in (overrides or {}).items() if v is not None}
    values = {**preset_values, **file_values, **flag_values}
    if values.get("model") == preset_values.get("model"):  # options add to the preset's, key by key
        layers = (preset_values, file_values, flag_values)
        values["model_options"] = {key: value for layer in layers for key, value in layer.get("model_options", {}).items()}
    elif "model_options" not in {**file_values, **flag_values}:
        values.pop("model_options", None)  # a preset's options belong to the preset's model
    try:
        return TrainConfig(**values)
    except TypeError as error:
        raise ConfigError(str(error)) from None


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    return TrainConfig(**{k: coerce(k, v, "checkpoint") for k, v in values.items()})
