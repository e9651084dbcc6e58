"""Where models run (``ferlab.device``): ``auto`` takes the GPU when there is one, a missing GPU or
an unknown name is one line, and a loaded model answers on its device (issue 12, item 2)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import ferlab
from ferlab.checkpoint import load_model
from ferlab.cli import main
from ferlab.device import choose_device, reuse_freed_memory
from ferlab.errors import FerlabError
from ferlab.explain import explain


def test_auto_follows_cuda_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("name", ["tpu", "gpu", "", "cuda:x"])
def test_unknown_device_names_are_one_line(name):
    with pytest.raises(FerlabError, match="unknown device"):
        choose_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_a_missing_gpu_is_one_line(name):
    with pytest.raises(FerlabError, match="no such CUDA device"):
        choose_device(name)


def test_loaded_models_sit_on_the_chosen_device():
    loaded = load_model("default", device="cpu")
    assert {p.device.type for p in loaded.model.parameters()} == {"cpu"}
    assert not loaded.model.training
    assert ferlab.load("default", device=choose_device("auto").type).loaded.model is not None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_the_cli_refuses_a_missing_gpu_in_one_line(tmp_path, capsys):
    assert main(["predict", "default", str(tmp_path), "--device", "cuda", "-o", str(tmp_path / "s.csv")]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "ferlab: error: device cuda requested but no such CUDA device is available"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_gpu_gives_the_cpus_answers(sample_faces):
    """Labels agree and probabilities within bf16's rounding; explanations run on the GPU too."""
    faces = sample_faces.split("test").images[:64]
    cpu, gpu = load_model("default", device="cpu"), load_model("default", device="cuda")
    assert next(gpu.model.parameters()).is_cuda
    p_cpu, p_gpu = cpu.probabilities(faces), gpu.probabilities(faces)
    assert (p_cpu.argmax(1) == p_gpu.argmax(1)).float().mean() >= 0.95
    assert (p_cpu - p_gpu).abs().max() < 0.05
    inputs = cpu.normalization.apply(faces[:4])
    maps_cpu, maps_gpu = explain("gradcam", cpu.model, inputs), explain("gradcam", gpu.model, inputs)
    assert maps_gpu.device.type == "cpu"
    assert torch.allclose(maps_cpu, maps_gpu, atol=1e-2 * maps_cpu.abs().max())


FAULTS_PER_BATCH = """
import resource, statistics, torch
from ferlab.device import reuse_freed_memory
reuse_freed_memory(torch.device("cpu"))
faces, conv, faults = torch.randn(64, 1, 48, 48), torch.nn.Conv2d(1, 256, 3, padding=1), []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with torch.no_grad():
        maps = conv(faces).relu()  # two float32 (64, 256, 48, 48) tensors: 151 MB, 36,864 pages of 4 KiB each
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del maps
print(min(faults[1:]), statistics.median(faults[1:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    """A batch's activations freed and asked for again: with ferlab's setting they come back from
    the heap (no page faults in most batches); with glibc's own (FERLAB_REUSE_MEMORY=0) every page
    is mapped afresh in every batch, the cost that made batch inference 1.6x slower
    (benchmarks/allocator.py)."""
    def faults(setting: str) -> tuple[int, float]:
        result = subprocess.run([sys.executable, "-c", FAULTS_PER_BATCH], capture_output=True, text=True, check=True,
                                env={**os.environ, "FERLAB_REUSE_MEMORY": setting})
        least, median = result.stdout.split()
        return int(least), float(median)

    assert faults("1")[1] <= 100
    assert faults("0")[0] >= 36_864  # at least one of the two tensors' pages, every batch


def test_memory_reuse_is_a_cpu_setting_and_can_be_turned_off(monkeypatch):
    assert not reuse_freed_memory(torch.device("cuda"))
    monkeypatch.setenv("FERLAB_REUSE_MEMORY", "0")
    assert not reuse_freed_memory(torch.device("cpu"))
    monkeypatch.delenv("FERLAB_REUSE_MEMORY")
    assert reuse_freed_memory(torch.device("cpu")) == sys.platform.startswith("linux")
