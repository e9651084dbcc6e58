"""Checkpoints as versioned plain dicts, loadable with ``torch.load(path, weights_only=True)`` and
written atomically (temporary file, then rename), so a crash never leaves half a checkpoint."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ferlab.config import TrainConfig, config_from_dict
from ferlab.data.normalize import Normalization
from ferlab.errors import FerlabError
from ferlab.labels import EMOTIONS
from ferlab.models import build_model

FORMAT = "ferlab-checkpoint"
VERSION = 1


def save_checkpoint(path: Path, payload: dict) -> None:
    payload = {"format": FORMAT, "version": VERSION, "classes": list(EMOTIONS), **payload}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FerlabError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise FerlabError(f"{path}: refused by torch.load(weights_only=True); it holds more than plain "
                          f"tensors and containers ({str(error).splitlines()[0][:120]})") from None
    except Exception as error:
        raise FerlabError(f"{path}: not a readable checkpoint ({error.__class__.__name__}: {error})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise FerlabError(f"{path}: not a ferlab checkpoint")
    if payload.get("version", 0) > VERSION:
        raise FerlabError(f"{path}: checkpoint format {payload['version']} is newer than this ferlab "
                          f"understands ({VERSION}); upgrade ferlab")
    if list(payload["classes"]) != list(EMOTIONS):
        raise FerlabError(f"{path}: classes {payload['classes']} differ from {list(EMOTIONS)}")
    return payload


@dataclass(frozen=True)
class LoadedModel:
    model: nn.Module             # in eval mode, on the CPU
    normalization: Normalization
    config: TrainConfig
    checkpoint: dict


DEFAULT_MODEL = "default"  # the name that means the model shipped inside the package


def shipped_model_path() -> Path:
    return Path(__file__).parent / "weights" / "default.pt"


def is_run_folder(run_or_file: str | os.PathLike) -> bool:
    return str(run_or_file) != DEFAULT_MODEL and Path(run_or_file).is_dir()


def resolve_checkpoint(run_or_file: str | os.PathLike, which: str = "best") -> Path:
    """A run folder -> its ``best.pt`` (or ``last.pt``); ``default`` -> the shipped model; a file
    stays itself."""
    if str(run_or_file) == DEFAULT_MODEL and not Path(run_or_file).exists():
        path = shipped_model_path()
        if not path.exists():
            raise FerlabError(f"{path}: the shipped default model is missing from this installation")
        return path
    path = Path(run_or_file)
    if path.is_dir():
        path = path / f"{which}.pt"
        if not path.exists():
            raise FerlabError(f"{path.parent}: no {which}.pt here; is this a ferlab run folder?")
    elif not path.exists():
        raise FerlabError(f"{path}: no such run folder or checkpoint")
    return path


def export_checkpoint(source: dict, path: Path) -> None:
    """A compact copy for shipping: weights in float16 (they are cast back to float32 on load),
    no optimiser state, no raw pre-averaging weights."""
    kept = {k: v for k, v in source.items() if k not in ("optimizer", "train_model", "rng", "format", "version", "classes")}
    kept["model"] = {k: (v.half() if v.is_floating_point() else v) for k, v in source["model"].items()}
    save_checkpoint(path, kept)


def load_model(run_or_file: str | os.PathLike, which: str = "best") -> LoadedModel:
    payload = read_checkpoint(resolve_checkpoint(run_or_file, which))
    config = config_from_dict(payload["config"])
    model = build_model(config.model, **config.model_options)
    model.load_state_dict(payload["model"])  # copies cast float16 (exported) weights to float32
    if config.channels_last:  # as trained; on CPUs this layout is markedly faster for convolutions
        model = model.to(memory_format=torch.channels_last)
    model.eval()
    return LoadedModel(model, Normalization(**payload["normalization"]), config, payload)
