"""Checkpoints as versioned plain dicts, loadable with ``torch.load(path, weights_only=True)`` and
written atomically (temporary file, then rename), so a crash never leaves half a checkpoint."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ferlab.config import TrainConfig, check_model_options, config_from_dict
from ferlab.device import choose_device
from ferlab.data.normalize import FER2013_MEAN_GRAY, KINDS, Normalization
from ferlab.errors import FerlabError, brief, check_local
from ferlab.evaluation import infer, infer_views
from ferlab.labels import EMOTIONS
from ferlab.models import build_model
from ferlab.models.layers import crop_input
from ferlab.outputs import same_content, same_file, save_torch
from ferlab.tta import TTA_POLICIES, check_tta, uses_windows, window_side

FORMAT = "ferlab-checkpoint"
VERSION = 1


def save_checkpoint(path: Path, payload: dict) -> None:
    payload = {"format": FORMAT, "version": VERSION, "classes": list(EMOTIONS), **payload}
    save_torch(payload, path)


def is_graph(path: str | os.PathLike) -> bool:
    """An ONNX graph (``ferlab export -o model.onnx``) rather than a checkpoint, by its suffix."""
    return Path(path).suffix.lower() == ".onnx"


MAX_CHECKPOINT_BYTES = 2 * 2**30  # unpacked; an ensemble of eight ResNet-18s with optimiser states is under 1 GiB


def archive_problem(path: Path) -> str | None:
    """Why the checkpoint's zip must not be unpacked, or None. torch.save stores its members
    uncompressed, but torch.load also inflates compressed ones: 15 MiB of deflated zeros became
    a 1 GiB tensor, so compressed members are refused, and so is more than MAX_CHECKPOINT_BYTES."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        return f"not a readable checkpoint (damaged zip: {str(error)[:120]})"
    compressed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
    if compressed:
        return (f"{len(compressed)} compressed member{'s' if len(compressed) > 1 else ''} ({compressed[0]}, ...); "
                "torch.save stores members uncompressed, and a compressed one may unpack to any size")
    unpacked = sum(m.file_size for m in members)
    if unpacked > MAX_CHECKPOINT_BYTES:
        return (f"unpacks to {unpacked / 2**20:,.0f} MiB, over the limit of {MAX_CHECKPOINT_BYTES / 2**20:,.0f} MiB "
                "for a checkpoint")
    return None


def unpickled_object(error: pickle.UnpicklingError) -> str:
    """What torch's refusal names (``Unsupported global: GLOBAL ferlab.models.layers.FeaturesHead``,
    a whole pickled model), without its paragraphs of advice and terminal escape codes."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    if found:
        return f"a pickled {found.group(1)}: a whole model saved with torch.save(model), or another object"
    return re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines()[0][:120]


def holds_weights_alone(payload) -> bool:
    """Whether a loaded file is a bare state_dict (``torch.save(model.state_dict())``) or one
    nested under a key, as other trainers write them: tensors and nothing of ferlab's record."""
    weights = payload.get("state_dict", payload.get("model", payload)) if isinstance(payload, dict) else None
    return isinstance(weights, dict) and bool(weights) and all(isinstance(v, torch.Tensor) for v in weights.values())


def read_checkpoint(path: str | os.PathLike, *, for_resume: bool = False) -> dict:
    """A checkpoint's payload, checked on load (see ``check_payload``): any inconsistency is one
    FerlabError naming the file, never a traceback or a model used half-loaded. ``for_resume``
    also requires the optimiser state an exported checkpoint leaves out."""
    path = Path(path)
    if not path.is_file():
        raise FerlabError(f"{path}: " + ("not a regular file (a device, socket or FIFO)" if path.exists() else "no such checkpoint"))
    if is_graph(path):
        raise FerlabError(f"{path}: an ONNX graph gives answers only (ferlab evaluate, predict, photo, video, serve, "
                          "summary, explain, report, ensemble and ferlab.load take it); this needs a run folder, a .pt "
                          "checkpoint or 'default'")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip; a legacy reader would fail obscurely
        raise FerlabError(f"{path}: not a PyTorch checkpoint (not a zip archive: truncated, damaged or another kind of file)")
    if problem := archive_problem(path):
        raise FerlabError(f"{path}: {problem}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise FerlabError(f"{path}: refused by torch.load(weights_only=True); it holds more than plain "
                          f"tensors and containers ({unpickled_object(error)})") from None
    except Exception as error:
        first_sentence = str(error).split("\n")[0].split(". ")[0][:160]
        raise FerlabError(f"{path}: not a readable checkpoint ({error.__class__.__name__}: {first_sentence})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise FerlabError(f"{path}: not a ferlab checkpoint" + (
            " (weights alone, a state_dict: ferlab's checkpoints also record the architecture, normalisation and "
            "classes; ferlab train and distill write them)" if holds_weights_alone(payload) else ""))
    if payload.get("version", 0) > VERSION:
        raise FerlabError(f"{path}: checkpoint format {payload['version']} is newer than this ferlab "
                          f"understands ({VERSION}); upgrade ferlab")
    problem = check_payload(payload, for_resume)
    if problem:
        raise FerlabError(f"{path}: {problem}")
    return payload


RESUME_KEYS = {"optimizer": dict, "history": list, "epoch": int}


def check_payload(payload: dict, for_resume: bool = False) -> str | None:
    """What is wrong with a checkpoint's payload, or None: classes, config, normalisation, and
    weights whose names and shapes match the architecture the config names."""
    if not isinstance(payload.get("classes"), list) or list(payload["classes"]) != list(EMOTIONS):
        return f"classes {payload.get('classes')!r} differ from {list(EMOTIONS)}"
    for key, kind in {"config": dict, "model": dict, "normalization": dict}.items():
        if not isinstance(payload.get(key), kind):
            return f"missing or malformed {key!r} entry (expected a {kind.__name__})"
    try:
        config = config_from_dict(payload["config"])
        normalization = Normalization(**payload["normalization"])
    except (FerlabError, TypeError, ValueError) as error:
        return f"inconsistent checkpoint: {error}"
    if payload.get("kind") == "ensemble":
        from ferlab.ensemble import check_ensemble

        return check_ensemble(payload)
    problem = check_normalization(normalization) or check_weights(payload["model"], config) \
        or check_calibration(payload.get("calibration", {}))
    if problem or not for_resume:
        return problem
    if "optimizer" not in payload:
        return "an exported checkpoint (weights only, no optimiser state) cannot be resumed; start a new run"
    for key, kind in RESUME_KEYS.items():
        if not isinstance(payload.get(key), kind):
            return f"missing or malformed {key!r} entry for resuming (expected a {kind.__name__})"
    return None


def check_calibration(calibration) -> str | None:
    temperature = calibration.get("temperature", 1.0) if isinstance(calibration, dict) else None
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
        return f"calibration temperature {temperature!r} must be a positive finite number"
    return None


def check_normalization(normalization: Normalization) -> str | None:
    if normalization.kind not in KINDS:
        return f"unknown normalization kind {normalization.kind!r}; expected one of {', '.join(KINDS)}"
    values = (normalization.mean, normalization.std)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) or normalization.std <= 0:
        return f"normalization mean {normalization.mean!r} and std {normalization.std!r} must be finite, std positive"
    return None


def check_weights(weights: dict, config: TrainConfig) -> str | None:
    """Names, shapes and kinds of ``weights`` against the architecture, built without memory."""
    with torch.device("meta"):
        expected = build_architecture(config).state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        return (f"weights do not match model {config.model!r}: "
                + (f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}" if missing else "")
                + ("; " if missing and unexpected else "")
                + (f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}" if unexpected else ""))
    for name, tensor in weights.items():
        if not isinstance(tensor, torch.Tensor):
            return f"weight {name!r} is a {type(tensor).__name__}, not a tensor"
        if tuple(tensor.shape) != tuple(expected[name].shape):
            return f"weight {name!r} has shape {tuple(tensor.shape)}, model {config.model!r} expects {tuple(expected[name].shape)}"
        if tensor.is_floating_point() != expected[name].is_floating_point():
            return f"weight {name!r} is {tensor.dtype}, model {config.model!r} expects {expected[name].dtype}"
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            # a damaged file or a diverged run: every answer would be NaN, labelled as class 0
            return f"weight {name!r} holds NaN or infinite values"
    return None


@dataclass(frozen=True)
class LoadedModel:
    model: nn.Module             # in eval mode, on its device (load_model's choice)
    normalization: Normalization
    config: TrainConfig
    checkpoint: dict
    is_graph: ClassVar[bool] = False  # an ONNX graph (ferlab.graph.GraphModel): no modules or weights to show

    def logits(self, faces: torch.Tensor, tta: str = "none", batch_size: int = 512, progress: str = "") -> torch.Tensor:
        """The one inference path every command takes: (N, 48, 48) uint8 faces -> (N, 7) float32
        logits on the CPU, in the precision and memory layout the model was trained with (bf16
        autocast where the CPU or GPU has it), so one face gets one answer everywhere. Crop views
        (``ten-crop``) take windows of the model's training crop (44 pixels if it had none).
        ``progress``: the title of a bar on stderr (on a terminal, for more than one batch)."""
        self.check_tta(tta)
        with self.threads():
            return infer(self.model, faces, self.normalization, tta=tta, batch_size=batch_size,
                         mixed_precision=self.config.mixed_precision, channels_last=self.config.channels_last,
                         window_side=window_side(self.config.crop), progress=progress)

    def threads(self) -> contextlib.AbstractContextManager:
        """The PyTorch threads this model's work runs under (inference, explanations, trust
        checks): all of them; a graph, whose runtime has threads of its own, takes one."""
        return contextlib.nullcontext()

    def check_tta(self, tta: str) -> str:
        """``tta`` if this model can answer with that policy, else one FerlabError: an unknown name,
        or crop windows for a model that takes whole faces only. Commands and the server call it
        before their first face, so a policy the model cannot take is one line, not an error per face."""
        if uses_windows(check_tta(tta)) and self.window_problem:
            raise FerlabError(self.window_problem)
        return tta

    def logits_by_policy(self, faces: torch.Tensor, policies) -> dict[str, torch.Tensor]:
        """``logits(faces, policy)`` for each of ``policies``, bit for bit, with every distinct view
        inferred once (the policies share views: flip's two are flip-zoom's first two)."""
        for policy in policies:
            self.check_tta(policy)
        return self.logits_of_views(faces, {policy: TTA_POLICIES[policy] for policy in policies})

    def logits_of_views(self, faces: torch.Tensor, candidates: dict) -> dict[str, torch.Tensor]:
        """For each name -> views of ``candidates`` (views as in ``evaluation.tta_view``), the mean
        logits over its views, summed in order as ``infer`` does; each distinct view is inferred once."""
        with self.threads():
            views = {view: infer_views(self.model, faces, self.normalization, [view], mixed_precision=self.config.mixed_precision,
                                       channels_last=self.config.channels_last, window_side=window_side(self.config.crop))
                     for view in dict.fromkeys(view for chosen in candidates.values() for view in chosen)}
        return {name: sum(views[view] for view in chosen) / len(chosen) for name, chosen in candidates.items()}

    @functools.cached_property
    def window_problem(self) -> str | None:
        """Why the model cannot take crop windows (``cnn``, ``dnn``: 48x48 only), or None; found
        once per model, not per call (photos and video ask for every face)."""
        try:
            check_model_options(self.config.model, self.config.model_options, window_side(self.config.crop))
        except FerlabError as error:
            return str(error)
        return None

    @functools.cached_property
    def overlay_method(self) -> str:
        """The explanation photos, ``Model.detect`` and the page lay over each face: Grad-CAM, or
        occlusion where Grad-CAM does not apply (no gradients: an ONNX graph; no single conv layer:
        a dnn, an ensemble)."""
        from ferlab.explain.common import conv_layers, gives_gradients

        return "gradcam" if gives_gradients(self.model) and conv_layers(self.model) else "occlusion"

    def overlay_options(self, layer: str | None) -> dict:
        """The options of ``overlay_method`` for a ``--layer`` (None: the method's default); a
        layer for a model whose faces occlusion explains is one FerlabError, before the first face."""
        from ferlab.explain import get_spec

        if layer is None:
            return {}
        if "layer" not in get_spec(self.overlay_method).options:
            model = self.checkpoint.get("source") or f"this {self.config.model} model"  # a graph's file
            raise FerlabError(f"--layer {layer}: picks Grad-CAM's conv layer, and {model} is explained by "
                              f"{self.overlay_method} (no gradients or no single conv layer)")
        return {"layer": layer}

    @property
    def mean_gray(self) -> float:
        """The training-set mean gray level in model-input units: what explanations put where they
        hide pixels (LIME's switched-off superpixels, occlusion's patches) and the trust check's
        deleted pixels become, so that hiding means "average", not "black"."""
        if self.normalization.kind == "standardize":
            return 0.0
        return float(self.normalization.apply(torch.full((1, 1, 1), FER2013_MEAN_GRAY)))

    def explain(self, method: str, faces: torch.Tensor, target=None, **options) -> torch.Tensor:
        """(N, 48, 48) uint8 faces -> ``method``'s raw (N, 1, 48, 48) maps (``ferlab.explain``), the
        faces normalised as for inference and hidden pixels set to ``mean_gray`` unless ``options``
        name a ``fill``. NotApplicable where the method cannot explain this model (gradients of an
        ONNX graph, a conv layer of a fully connected model)."""
        from ferlab.explain import explain, get_spec

        if "fill" in get_spec(method).options:
            options = {"fill": self.mean_gray, **options}
        with self.threads():
            return explain(method, self.model, self.normalization.apply(faces), target, **options)

    @property
    def temperature(self) -> float:
        return calibration_temperature(self.checkpoint)

    def probabilities(self, faces: torch.Tensor, tta: str = "none", progress: str = "") -> torch.Tensor:
        """(N, 48, 48) uint8 faces -> (N, 7) calibrated class probabilities: softmax(logits / T)."""
        return (self.logits(faces, tta, progress=progress) / self.temperature).softmax(1)


def calibration_temperature(payload: dict) -> float:
    """A checkpoint's calibration temperature, fitted on PublicTest (``ferlab.calibration``); 1 if none."""
    return float(payload.get("calibration", {}).get("temperature", 1.0))


DEFAULT_MODEL = "default"  # the name that means the model shipped inside the package
# Every model shipped inside the package, by the name that means it (a file or folder of that
# name in the working directory wins); each has its card beside it (weights/MODEL_CARD*.md).
SHIPPED_MODELS = {DEFAULT_MODEL: "default.pt", "default-fast": "default-fast.pt"}


def shipped_model_path(name: str = DEFAULT_MODEL) -> Path:
    return Path(__file__).parent / "weights" / SHIPPED_MODELS[name]


def is_shipped_name(run_or_file: str | os.PathLike) -> bool:
    return str(run_or_file) in SHIPPED_MODELS and not Path(run_or_file).exists()


def shipped_hint(name: str) -> str:
    """"; did you mean 'default-fast'?" for a near miss of a shipped model's name ("DEFAULT",
    "default_fast", "defualt"), else ""."""
    import difflib

    close = difflib.get_close_matches(name.lower().replace("_", "-"), SHIPPED_MODELS, n=1, cutoff=0.8)
    return f"; did you mean {close[0]!r}?" if close else ""


def is_run_folder(run_or_file: str | os.PathLike) -> bool:
    return str(run_or_file) not in SHIPPED_MODELS and Path(run_or_file).is_dir()


def check_distinct_models(sources: list[str], role: str) -> None:
    """One FerlabError where a model is given twice (``runs/a`` and ``runs/a/``, a file and a link
    to it, ``default`` and its file): an ensemble's members or a student's teachers are distinct
    models (an ensemble keyed them by name, so ``default default`` became one member written
    with two weights). A byte-for-byte copy under another name is the same model too."""
    paths = [resolve_checkpoint(source) for source in sources]
    for later, path in enumerate(paths):
        for earlier in range(later):
            if same_file(path, paths[earlier]):
                raise FerlabError(f"{sources[later]}: is {sources[earlier]} again; the {role} must be distinct models")
            if same_content(path, paths[earlier]):  # a copy (cp runs/a/best.pt b.pt) counted twice as well
                raise FerlabError(f"{sources[later]}: is a copy of {sources[earlier]}; the {role} must be distinct models")


def resolve_checkpoint(run_or_file: str | os.PathLike, which: str = "best") -> Path:
    """A run folder -> its ``best.pt`` (or ``last.pt``); ``default``, ``default-fast`` -> the
    shipped models; a file stays itself."""
    if which not in ("best", "last"):  # ferlab.load(..., checkpoint="worst") took the file or shipped model silently
        raise FerlabError(f"checkpoint {which!r}: a run folder holds best.pt and last.pt; choose best or last")
    if isinstance(run_or_file, bytes) or not isinstance(run_or_file, (str, os.PathLike)) or not str(run_or_file):
        # '' was the current folder ("no best.pt here"), 123 or None a TypeError from pathlib
        raise FerlabError(f"model {brief(run_or_file)}: name a run folder, a checkpoint or ONNX file, 'default' or 'default-fast'")
    if is_shipped_name(run_or_file):
        if which != "best":
            raise FerlabError(f"--checkpoint {which}: {run_or_file} is one shipped model; a run folder holds best.pt and last.pt")
        path = shipped_model_path(str(run_or_file))
        if not path.exists():
            raise FerlabError(f"{path}: the shipped {run_or_file} model is missing from this installation")
        return path
    check_local(run_or_file, "model")
    path = Path(run_or_file)
    if path.is_dir():
        path = path / f"{which}.pt"
        if not path.exists():
            raise FerlabError(f"{path.parent}: no {which}.pt here; is this a ferlab run folder?")
    elif not path.exists():
        raise FerlabError(f"{path}: no such run folder or checkpoint{shipped_hint(str(run_or_file))}")
    elif which != "best":  # --checkpoint last of a file took the file without a word
        raise FerlabError(f"--checkpoint {which}: {run_or_file} is one checkpoint file; a run folder holds best.pt and last.pt")
    return path


def export_checkpoint(source: dict, path: Path) -> None:
    """A compact copy for shipping: weights in float16 (they are cast back to float32 on load),
    no optimiser state, no raw pre-averaging weights."""
    kept = {k: v for k, v in source.items() if k not in ("optimizer", "train_model", "rng", "format", "version", "classes")}
    kept["model"] = {k: (v.half() if v.is_floating_point() else v) for k, v in source["model"].items()}
    save_checkpoint(path, kept)


def build_architecture(config: TrainConfig) -> nn.Module:
    """The network a checkpoint's weights go into, answering on the centre crop of a face when it
    was trained on crops. Options that only choose initial weights (``pretrained``: a file that
    may not exist where the checkpoint is used) are left out."""
    options = {k: v for k, v in config.model_options.items() if k != "pretrained"}
    return crop_input(build_model(config.model, **options), config.crop)


def load_model(run_or_file: str | os.PathLike, which: str = "best", device: str = "auto",
               graphs: bool = False) -> LoadedModel:
    """A checkpoint, ready for inference on ``device`` (``auto``: the GPU when there is one).
    ``graphs``: an ONNX graph of ``ferlab export`` is taken too (``ferlab.graph``), for callers
    that only need answers; elsewhere it is refused in one line."""
    path = resolve_checkpoint(run_or_file, which)
    if graphs and is_graph(path):
        from ferlab.graph import load_graph

        return load_graph(path, device)
    payload = read_checkpoint(path)
    config = config_from_dict(payload["config"])
    if payload.get("kind") == "ensemble":  # one model made of several (ferlab ensemble -o)
        from ferlab.ensemble import load_ensemble

        model, normalization = load_ensemble(payload)
    else:
        model, normalization = build_architecture(config), Normalization(**payload["normalization"])
        model.load_state_dict(payload["model"])  # copies cast float16 (exported) weights to float32
    if config.channels_last:  # as trained; on CPUs this layout is markedly faster for convolutions
        model = model.to(memory_format=torch.channels_last)
    return LoadedModel(model.to(choose_device(device)).eval(), normalization, config, payload)
