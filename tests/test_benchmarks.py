"""The GPU benchmark scripts run end to end on the CPU at a reduced size (the issue's "without a
GPU" requirement); their numbers here check the plumbing, not the presets."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
import yaml

from ferlab.config import ENSEMBLES, resolve_config
from ferlab.distill import training_seconds
from ferlab.tta import choose_tta

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_presets_benchmark_prints_seeds_and_an_ensemble_row(tmp_path, sample_archive):
    out = run_script("benchmarks/presets.py", "--data", str(sample_archive), "--presets", "smoke", "--seeds", "0", "1",
                     "--epochs", "1", "--keep", str(tmp_path / "keep"), "--json", str(tmp_path / "table.json"))
    assert "| smoke | 2 |" in out and "| smoke: ensemble of the 2 seeds" in out and "REDUCED: 1 epochs" in out
    figures = json.loads((tmp_path / "table.json").read_text())["rows"][0]
    assert [run["seed"] for run in figures["runs"]] == [0, 1]
    assert all(0 <= run["test"] <= 1 and run["epochs"] == 1 for run in figures["runs"])
    kept = torch.load(tmp_path / "keep" / "smoke-seed1.pt", weights_only=True)
    assert all(v.dtype in (torch.float16, torch.int64) for v in kept["model"].values())


def test_presets_benchmark_trains_an_ensemble_of_families_and_chooses_each_tta_on_publictest(tmp_path, sample_archive):
    out = run_script("benchmarks/presets.py", "--data", str(sample_archive), "--ensemble", "families", "--seeds", "0",
                     "--epochs", "1", "--json", str(tmp_path / "table.json"))
    assert all(f"| {preset} | 1 |" in out for preset in ENSEMBLES["families"])
    assert "| ensemble families: all 3 runs of best, best-vgg8, best-resnet18" in out
    figures = json.loads((tmp_path / "table.json").read_text())
    tables = [run for row in figures["rows"] for run in row["runs"]] + [figures["ensemble"]]
    for row in tables:  # the policy is PublicTest's best (the fewest views of equals), reported on PrivateTest
        scores = {tta: row["val" if tta == "none" else f"val_{tta}"] for tta in ("none", "flip", "flip-zoom", "ten-crop")}
        assert row["tta"] == choose_tta(scores) and scores[row["tta"]] == max(scores.values())
        assert row["test_chosen"] == row["test" if row["tta"] == "none" else f"test_{row['tta']}"]


@pytest.mark.parametrize("runner", [[], ["--local"]], ids=["ray", "local processes"])
def test_tune_sweep_ranks_variants_on_publictest_only(tmp_path, sample_archive, runner):
    if not runner:
        pytest.importorskip("ray")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("preset: smoke\nvariants:\n  - {label: plain, epochs: 1}\n  - {label: erased, epochs: 1, erase: 0.5}\n")
    out = run_script("benchmarks/tune.py", str(sweep), "--data", str(sample_archive), "--parallel", "2",
                     "--out", str(tmp_path / "results"), *runner)
    assert "PrivateTest not evaluated" in out
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert {r["label"] for r in results} == {"plain", "erased"}
    assert [r["publictest"] for r in results] == sorted((r["publictest"] for r in results), reverse=True)
    assert all("test" not in key.lower() or key == "publictest" for r in results for key in r)


def test_tta_benchmark_chooses_on_publictest_and_looks_at_privatetest_twice_at_most(sample_archive):
    out = run_script("benchmarks/tta.py", "--data", str(sample_archive))
    table = [line.strip("| ").split(" | ") for line in out.splitlines() if line.startswith("| ")]
    rows = {name: (float(public), private) for name, public, private in table[2:]}  # after the header and ---
    assert len(rows) == 7  # every candidate policy
    chosen = [name for name in rows if name.endswith(" (chosen)")]
    assert len(chosen) == 1 and rows[chosen[0]][0] == max(public for public, _ in rows.values())
    evaluated = {name.removesuffix(" (chosen)") for name, (_, private) in rows.items() if private != "not evaluated"}
    assert evaluated == {"flip", chosen[0].removesuffix(" (chosen)")}


def test_pipeline_benchmark_times_both_pipelines_and_a_compiled_step(sample_archive):
    out = run_script("benchmarks/pipeline.py", "--data", str(sample_archive), "--preset", "smoke", "--steps", "2",
                     "--workers", "0", "--compile", "default")
    for row in ("DataLoader + torchvision transforms (0 workers)", "ferlab: uint8 on device",
                "ferlab + torch.compile(mode='default')"):
        assert f"| {row}" in out
    assert "epoch-time ratio baseline / ferlab:" in out and "epoch-time ratio baseline / compile-default:" in out


def test_onnx_benchmark_times_onnxruntime_and_its_int8_graph_beside_pytorch(sample_archive):
    out = run_script("benchmarks/exported.py", "--data", str(sample_archive), "--faces", "64", "--repeats", "1",
                     "--int8")
    assert "| 1 | onnxruntime (CPU provider) |" in out and "| 256 | PyTorch float32 | " in out
    assert "| 256 | onnxruntime int8 (ferlab export --int8) |" in out
    assert "| 1 | the same graph through ferlab (LoadedModel.logits) |" in out and "| 256 | the int8 graph through ferlab |" in out
    assert "| 64 | the same graph through ferlab, PyTorch's threads left spinning |" in out
    assert "int8 check: PublicTest (fer2013-sample.tar.gz): " in out
    difference = float(re.search(r"logit difference\|.*: (\S+)", out).group(1))
    assert difference <= 1e-3
    agreement = float(re.search(r"int8 labels equal to float32's on ([\d.]+)%", out).group(1))
    assert 85 <= agreement <= 100  # 8 bits move borderline faces only


def test_detectors_benchmark_scores_both_detectors_on_real_photos(sample_archive):
    out = run_script("benchmarks/detectors.py", "--scenes", "4", "--data", str(sample_archive))
    rows = [line.strip("| ").split(" | ") for line in out.splitlines() if line.startswith("| hog") or line.startswith("| haar")]
    assert {row[0] for row in rows} == {"hog", "haar"}
    for row in rows:
        found, total = row[2].split(" ")[0].split("/")
        assert 0 < int(found) <= int(total)
    assert "own 48x48 crops: accuracy" in out


def test_video_benchmark_times_each_setting():
    out = run_script("benchmarks/video.py", "--frames", "10")
    rows = [line.strip("| ").split(" | ") for line in out.splitlines() if line.startswith("| hog") or line.startswith("| haar")]
    assert len(rows) == 5 and all(float(row[1]) > 0 for row in rows)
    assert [row[0] for row in rows][:2] == ["hog, every frame", "hog, every frame, --explain"]


@pytest.mark.browser
def test_webcam_benchmark_counts_round_trips_without_and_with_the_map():
    out = run_script("benchmarks/webcam.py", "--seconds", "1", "--rounds", "1", "--model", "default-fast")
    assert "model default-fast, explained by gradcam" in out
    rates = re.search(r"all rounds: ([\d.]+) per second without the map, ([\d.]+) with it \(([\d.]+)x\); browser errors: none", out)
    assert rates and float(rates.group(1)) > 0 and float(rates.group(2)) > 0, out
    assert [line.split(":")[0] for line in out.splitlines() if " the map: " in line] == ["without the map", "with the map"]


def test_graph_trust_benchmark_times_the_trust_stage_on_all_threads_and_one(tmp_path, sample_archive):
    pytest.importorskip("onnxruntime")
    from ferlab.cli import main

    assert main(["export", "default-fast", "-o", str(tmp_path / "fast.onnx")]) == 0
    out = run_script("benchmarks/graph_trust.py", str(tmp_path / "fast.onnx"), "--rounds", "1", "--data", str(sample_archive))
    assert re.search(r"^all threads: [\d.]+ s$", out, re.M) and re.search(r"^one thread: [\d.]+ s$", out, re.M)
    assert re.search(r"median: [\d.]+ s on all threads, [\d.]+ s on one \([\d.]+x\)", out)


def test_an_ensembles_members_on_ray_equal_the_sequential_ones(tmp_path, sample_archive):
    common = ["benchmarks/presets.py", "--data", str(sample_archive), "--presets", "smoke", "--seeds", "0", "1",
              "--epochs", "1"]
    run_script(*common, "--json", str(tmp_path / "sequential.json"))
    run_script(*common, "--ray", "--json", str(tmp_path / "ray.json"))
    rows = [json.loads((tmp_path / name).read_text())["rows"][0] for name in ("sequential.json", "ray.json")]
    assert len(rows[0]["runs"]) == len(rows[1]["runs"]) == 2
    for sequential, on_ray in zip(rows[0]["runs"], rows[1]["runs"]):
        assert {"seed", "val", "test", "val_flip", "test_flip"} <= set(sequential)
        assert {k: v for k, v in sequential.items() if k in ("seed", "val", "test", "val_flip", "test_flip")} == \
               {k: v for k, v in on_ray.items() if k in ("seed", "val", "test", "val_flip", "test_flip")}


def test_tta_benchmark_measures_ten_crop(sample_archive):
    out = run_script("benchmarks/tta.py", "--data", str(sample_archive), "--only", "ten-crop")
    table = [line.strip("| ").split(" | ") for line in out.splitlines() if line.startswith("| ")][2:]
    assert [row[0].removesuffix(" (chosen)") for row in table] == ["none", "flip", "ten-crop (corners + centre, each mirrored)"]


def test_throughput_benchmark_times_every_model_it_is_given(tmp_path, sample_archive):
    from ferlab.checkpoint import shipped_model_path

    shipped = str(shipped_model_path())  # the same weights under a second name: two rows
    out = run_script("benchmarks/throughput.py", "default", shipped, "--data", str(sample_archive), "--faces", "64",
                     "--batch", "32", "--rounds", "1")
    rows = [line for line in out.splitlines() if line.startswith(("| default", f"| {shipped}"))]
    assert len(rows) == 2 and all("fastnet" in row and "7.86 M" in row for row in rows)
    assert all(float(row.split(" | ")[3].replace(",", "")) > 0 for row in rows)
    assert all(row.split(" | ")[4].strip(" |") == "70.00" for row in rows)  # the card's sample figure (49 of 70)


def test_throughput_benchmark_infers_with_the_tta_it_is_given(sample_archive):
    from ferlab.checkpoint import load_model
    from ferlab.data import load_faces

    test = load_faces(sample_archive).split("test")
    flipped = load_model("default", device="cpu").logits(test.images, tta="flip").argmax(1)
    expected = f"{100 * float((flipped == test.labels).double().mean()):.2f}"
    out = run_script("benchmarks/throughput.py", "default", "--data", str(sample_archive), "--faces", "64",
                     "--batch", "32", "--rounds", "1", "--tta", "flip")
    row = next(line for line in out.splitlines() if line.startswith("| default"))
    assert "test-time augmentation: flip" in out and row.split(" | ")[4].strip(" |") == expected



def test_inference_paths_benchmark_times_every_route_beside_the_inference_path(sample_archive):
    out = run_script("benchmarks/inference_paths.py", "--data", str(sample_archive), "--faces", "32", "--batch", "16",
                     "--rounds", "1", "--compile", "--test-accuracy")
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| ") and "faces/s" not in line}
    assert set(rows) >= {"inference path", "inference_mode", "float32 (Model.network)", "bf16 weights",
                         "TorchScript float32, optimised", "TorchScript frozen, bf16 autocast", "torch.compile, bf16 weights"}
    assert "| 1.00× | 100.00% |" in rows["inference path"]  # the reference agrees with itself
    assert "PrivateTest accuracy (read, not chosen on)" in out
    accuracy = rows["inference path"].rstrip(" |").rsplit("| ", 1)[-1]
    assert accuracy.endswith("%") and 0 <= float(accuracy[:-1]) <= 100
    assert "to compile" in out


def test_allocator_benchmark_times_both_mallocs_and_finds_the_same_weights(sample_archive):
    out = run_script("benchmarks/allocator.py", "--data", str(sample_archive), "--rounds", "1", "--steps", "1",
                     "--faces", "64", "--batch", "32")
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith(("| training", "| batch"))]
    assert [row[1] for row in rows] == ["malloc as glibc leaves it", "freed memory reused (ferlab's default)"] * 2
    assert rows[0][-1] == "1.00x |" and all(float(row[2].replace(",", "")) > 0 for row in rows)
    assert "the same bits under both settings" in out

def test_orthogonalize_benchmark_times_both_forms_on_every_hidden_matrix(sample_archive):
    out = run_script("benchmarks/orthogonalize.py", "--data", str(sample_archive), "--repeats", "1", "--steps", "1",
                     "--rounds", "2")
    matrices = [line for line in out.splitlines() if line.startswith("| (")]
    assert len(matrices) == 11 and "| (256, 2304) |" in matrices[-1]  # the lean fastnet's hidden convolutions
    spectral_errors = [float(line.split("|")[-2].strip().rstrip("%")) for line in matrices]
    assert max(spectral_errors) < 1  # percent from the unrounded iteration
    rounds = [line for line in out.splitlines() if line.startswith(("| 1 |", "| 2 |", "| **median**"))]
    assert len(rounds) == 3


def test_train_speed_benchmark_puts_crops_beside_the_preset(sample_archive):
    out = run_script("benchmarks/train_speed.py", "--data", str(sample_archive), "--steps", "1")
    rows = [line for line in out.splitlines() if line.startswith("| cpu preset")]
    assert len(rows) == 12 and rows[0].endswith("| 1.00x |") and "'crop': 40" in rows[2]
    assert "'stem': True, 'pool_first': False" in rows[7] and "'optimizer': 'adamw'" in rows[8]
    assert "'progressive_start': 32" in rows[10] and "'batch_size': 128" in rows[11]  # the preset's batch before
    out = run_script("benchmarks/train_speed.py", "--data", str(sample_archive), "--steps", "1", "--rounds", "2", "--only", "2")
    rows = [line for line in out.splitlines() if line.startswith("| cpu preset")]
    assert len(rows) == 2 and "median of 2" in out and "'crop': 40" in rows[1]


def test_runs_table_puts_seeds_side_by_side_with_their_mean_and_spread(tmp_path):
    for seed, (public, private, tta) in enumerate([(0.60, 0.64, None), (0.62, 0.66, (0.63, 0.67))]):
        metrics = {"best_epoch": 11 + seed, "epochs": 12, "val_accuracy": public, "test_accuracy": private,
                   "train_seconds": 500 + 100 * seed, "tta": {"chosen": "ten-crop" if tta else "none"}}
        if tta:
            metrics.update(val_tta_accuracy=tta[0], test_tta_accuracy=tta[1])
        (tmp_path / f"seed{seed}").mkdir()
        (tmp_path / f"seed{seed}" / "metrics.json").write_text(json.dumps(metrics))
    out = run_script("benchmarks/runs_table.py", str(tmp_path / "seed0"), str(tmp_path / "seed1"))
    assert "| seed0 | 11/12 | none | 60.00 | 64.00 | 60.00 | 64.00 | 500 |" in out  # no TTA won: the plain figures
    assert "| seed1 | 12/12 | ten-crop | 62.00 | 66.00 | 63.00 | 67.00 | 600 |" in out
    assert "| mean ± std of 2 | | | 61.00 ± 1.41 | 65.00 ± 1.41 | 61.50 ± 2.12 | 65.50 ± 2.12 | 550 ± 71 |" in out


@pytest.mark.parametrize("sweep", sorted((ROOT / "benchmarks").glob("tune*.yaml")), ids=lambda path: path.name)
def test_every_sweep_file_resolves_to_valid_configs(sweep):
    """A typo in a sweep written for a scarce GPU session must fail here, not on the device."""
    spec = yaml.safe_load(sweep.read_text())
    labels = [variant["label"] for variant in spec["variants"]]
    assert len(set(labels)) == len(labels)
    for variant in spec["variants"]:
        resolve_config(spec["preset"], overrides={k: v for k, v in variant.items() if k not in ("label", "seconds")})


def gpu_session_env(tmp_path: Path) -> dict:
    """gpu_session.py's folders (work, pack, $OUT, the decode cache) under ``tmp_path``."""
    return {**os.environ, "FERLAB_GPU_WORK": str(tmp_path / "work"), "FERLAB_GPU_PACK": str(tmp_path / "pack"),
            "OUT": str(tmp_path / "out"), "FERLAB_CACHE": str(tmp_path / "cache")}


def half_of(archive: Path) -> str:
    """A part size that sends ``archive`` in two parts (its tar adds up to 20 KiB of headers and padding)."""
    return str((archive.stat().st_size + 20480) // 2)


def test_the_gpu_sessions_rehearse_every_stage_on_the_cpu_without_the_packages_the_device_lacks(tmp_path, sample_archive):
    """Session A (the archive in two parts, the step's speed, the families trained and sent back in
    pieces) and session B (the archive and those pieces carried in, both students distilled), each
    on a fresh machine of its own."""
    def stage(session: str, *arguments: str) -> str:
        device = {**gpu_session_env(tmp_path / session), "PYTHONPATH": str(ROOT / "tests" / "device_image")}
        result = subprocess.run([sys.executable, "benchmarks/gpu_session.py", *arguments], cwd=ROOT, env=device,
                                capture_output=True, text=True, timeout=900, check=False)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return result.stdout

    device = {**gpu_session_env(tmp_path / "a"), "PYTHONPATH": str(ROOT / "tests" / "device_image")}
    lacking = subprocess.run([sys.executable, "-c", "import ray"], env=device, capture_output=True, text=True)
    assert lacking.returncode != 0 and "absent on the GPU machine" in lacking.stderr  # the stand-in does lack them
    stage("a", "pack", "--archive", str(sample_archive), "--part-bytes", half_of(sample_archive))
    pack, out = tmp_path / "a" / "pack", tmp_path / "a" / "out"
    joined = (pack / "part1").read_bytes() + (pack / "part2").read_bytes()
    assert load_gpu_session().files_of(joined, "parts")["fer2013-images.tar.xz"] == sample_archive.read_bytes()
    assert "parts here: ['part1']" in stage("a", "receive", str(pack / "part1"))  # the first call: half the data
    assert "checksum matches; 420 faces decoded" in stage("a", "receive", str(pack / "part2"), str(pack / "MANIFEST"))
    speed = stage("a", "speed", "--steps", "2", "--compile", "default")  # both modes on the GPU
    assert "compile-default" in speed and all(f"| {preset} |" in speed for preset in ENSEMBLES["families"])
    cut_short = stage("a", "families", "--epochs", "1", "--budget", "3")  # out of time: interrupted, not failed
    assert cut_short.count("call the stage again") == 3 and "FAILED" not in cut_short
    families = stage("a", "families", "--epochs", "1")  # the same call again finishes them
    assert "FAILED" not in families and "families: 1 epochs each (their schedule: 150)" in families
    assert "chosen on PublicTest" in (out / "families.md").read_text()
    pieces = sorted(out.glob("members.tar.*"))
    assert len(pieces) >= 3 and all(piece.stat().st_size <= 16 * 2 ** 20 for piece in pieces)  # what may come back
    assert len(list(out.iterdir())) <= 8

    stage("b", "pack", "--archive", str(sample_archive), "--members", *map(str, pieces))  # a fresh machine
    pack, out = tmp_path / "b" / "pack", tmp_path / "b" / "out"
    parts = sorted(pack.glob("part*"))
    checkout = load_gpu_session().checkout_bytes()  # travels with every call
    assert len(parts) == 2 and all(checkout + part.stat().st_size <= 64 * 2 ** 20 for part in parts)
    stage("b", "receive", str(parts[0]))
    received = stage("b", "receive", str(parts[1]), str(pack / "MANIFEST"))
    assert "members ['best-resnet18.pt', 'best-vgg8.pt', 'best.pt']" in received
    distilled = stage("b", "distill", "--epochs", "1")
    assert "distill: 1 epochs each" in distilled and "FAILED" not in distilled
    for name in ("default", "default-fast"):
        shipped = torch.load(out / f"{name}.pt", weights_only=True)
        assert [teacher["model"] for teacher in shipped["distillation"]["teachers"]] == ["fastnet", "vgg8", "resnet18"]
        assert all(v.dtype in (torch.float16, torch.int64) for v in shipped["model"].values())
    assert torch.load(out / "default-fast.pt", weights_only=True)["config"]["model_options"]["widths"] == [32, 64, 128, 256]
    with tarfile.open(out / "distill-runs.tar.gz") as bundle:
        assert {"default/history.csv", "default-fast/metrics.json", "default/train.log"} <= set(bundle.getnames())
    continued = stage("b", "continue", "--epochs", "1")  # the same warm machine, its distill runs still there
    assert "continue: 1 epochs each (their schedule: 8)" in continued and "FAILED" not in continued
    for name in ("default", "default-fast"):
        stage_one = torch.load(tmp_path / "b" / "work" / "distill" / name / "best.pt", weights_only=True)
        shipped = torch.load(out / f"{name}-continued.pt", weights_only=True)
        config = shipped["config"]
        assert (config["schedule"], config["lr"], config["ema"]) == ("none", 3e-3 / 4, 0.998)  # best's peak lr, a quarter
        assert shipped["init"] == {"source": str(tmp_path / "b" / "work" / "distill" / name),
                                   "train_seconds": training_seconds(stage_one)}  # stage one's whole time stays on record
        assert training_seconds(shipped) > training_seconds(stage_one) > 0
    assert len(list(out.iterdir())) <= 8


def test_gpu_session_c_sweeps_at_full_schedules_and_measures_presets_over_seeds(tmp_path, sample_archive):
    """Session C (item 5) rehearsed: the archive in two parts, then the long sweep's variants at once
    (cut short, then resumed by the same stage), ranked on PublicTest alone, then presets over seeds."""
    device = {**gpu_session_env(tmp_path), "PYTHONPATH": str(ROOT / "tests" / "device_image")}

    def stage(*arguments: str) -> str:
        result = subprocess.run([sys.executable, "benchmarks/gpu_session.py", *arguments], cwd=ROOT, env=device,
                                capture_output=True, text=True, timeout=900, check=False)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return result.stdout

    pack, out = tmp_path / "pack", tmp_path / "out"
    stage("pack", "--archive", str(sample_archive), "--part-bytes", half_of(sample_archive))
    stage("receive", str(pack / "part1"))
    stage("receive", str(pack / "part2"), str(pack / "MANIFEST"))
    cut_short = stage("sweep", "--epochs", "2", "--budget", "3")
    assert cut_short.count("call the stage again") == 3 and "FAILED" not in cut_short
    swept = stage("sweep", "--epochs", "2")  # the same call again resumes them
    assert "FAILED" not in swept and "shared one GPU" in swept
    table = (out / "sweep-tune-gpu-long.md").read_text()
    assert "PrivateTest" not in table and table.count("/2 |") == 3  # PublicTest alone chooses; every run whole
    assert all(f"{label} |" in table for label in ("EMA-warm-up", "weight-decay-0.05", "Muon"))
    accuracies = [float(line.split("|")[5]) for line in table.splitlines() if "/2 |" in line]
    assert accuracies == sorted(accuracies, reverse=True)  # ranked by PublicTest with the TTA each chose
    measured = stage("seeds", "--presets", "fast", "smoke", "--seeds", "0", "1", "--epochs", "1")
    assert "FAILED" not in measured
    for preset in ("fast", "smoke"):
        report = (out / f"seeds-{preset}.md").read_text()
        assert report.count(f"| {preset}-seed") == 3 and "±" in report  # two runs, their mean ± std, their ensemble:
        assert f"| {preset}-seed0, {preset}-seed1 |" in report and "chosen on PublicTest" in report
        assert f"{'smoke' if preset == 'fast' else 'fast'}-seed" not in report  # a table per preset
    assert len(list(out.iterdir())) <= 8


def test_epochs_are_fitted_to_the_seconds_left_one_run_after_another():
    fitted_epochs = load_gpu_session().fitted_epochs
    # 1,000 faces an epoch at 100 and 400 images/s alone: 10 + 2.5 = 12.5 s an epoch for both
    assert fitted_epochs({"a": 100.0, "b": 400.0}, 1000, 130.0, most=150) == 10
    assert fitted_epochs({"a": 100.0, "b": 400.0}, 1000, 1e6, most=150) == 150  # never past the schedule
    assert fitted_epochs({"a": 100.0}, 1000, -5.0, most=150) == 1  # out of time: still one epoch


def load_gpu_session():
    spec = importlib.util.spec_from_file_location("gpu_session", ROOT / "benchmarks" / "gpu_session.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_run_interrupted_before_python_handles_sigint_is_interrupted_not_failed(tmp_path, monkeypatch, capsys):
    """SIGINT that lands before a run's Python has installed its handler ends it with -2, not 130
    (the CI race of session 12); `sleep` has SIGINT's default action throughout, so it is that case
    every time. A run that fails by itself is still reported as FAILED."""
    monkeypatch.setenv("FERLAB_GPU_WORK", str(tmp_path / "work"))
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    gpu_session = load_gpu_session()
    commands = {"slow": ["sleep", "60"], "broken": [sys.executable, "-c", "raise SystemExit(3)"]}
    codes, interrupted, wall = gpu_session.run_together(commands, budget=2)
    assert codes == {"slow": -2, "broken": 3} and interrupted == {"slow"} and wall < 30
    gpu_session.report("families", {name: tmp_path / name for name in commands}, codes, interrupted, wall)
    assert "FAILED {'broken': 3}" in capsys.readouterr().out


@pytest.mark.parametrize("arguments, message", [
    (["speed"], "not here (a fresh machine?): make the receive calls first"),
    (["distill"], "no teachers: neither session A's members"),
    (["continue"], "continue: the distill stage has not finished default, default-fast on this machine"),
    (["pack", "--members", "/tmp/members.tar"], "/tmp/members.tar: not a piece of members.tar (named members.tar.N"),
    (["pack", "--archive", "/no/such/archive.tar.xz"], "/no/such/archive.tar.xz: cannot read (No such file or directory)"),
    (["receive", "/no/such/part1"], "/no/such/part1: cannot read (No such file or directory)"),
    (["sweep", "--sweep", "{tmp}/random.yaml"], "a random search draws its trials in Ray Tune (ferlab tune)"),
    (["sweep", "--sweep", "/no/such/sweep.yaml"], "/no/such/sweep.yaml"),
])
def test_a_gpu_session_stage_that_cannot_go_on_says_why_in_one_line(tmp_path, arguments, message):
    device = gpu_session_env(tmp_path)
    (tmp_path / "random.yaml").write_text("preset: best\nrandom: {lr: {loguniform: [0.0001, 0.01]}}\n")
    arguments = [argument.format(tmp=tmp_path) for argument in arguments]
    result = subprocess.run([sys.executable, "benchmarks/gpu_session.py", *arguments], cwd=ROOT, env=device,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and message in result.stderr, result.stderr


def test_a_damaged_part_or_manifest_is_refused_in_one_line(tmp_path, sample_archive):
    device = gpu_session_env(tmp_path)
    script = [sys.executable, "benchmarks/gpu_session.py"]
    subprocess.run([*script, "pack", "--archive", str(sample_archive), "--part-bytes", half_of(sample_archive)], cwd=ROOT, env=device,
                   check=True, capture_output=True)
    pack = tmp_path / "pack"

    def receive(*names: str):
        return subprocess.run([*script, "receive", *(str(pack / name) for name in names)], cwd=ROOT, env=device,
                              capture_output=True, text=True, timeout=120, check=False)

    with open(pack / "part2", "ab") as part:
        part.write(b"\0")  # one byte more than was packed
    result = receive("part1", "part2", "MANIFEST")
    assert result.returncode == 2 and "is not the packed" in result.stderr and "decoded" not in result.stdout
    (pack / "MANIFEST").write_text("{\"parts\": [\"part1\"")  # cut off
    result = receive("MANIFEST")
    assert result.returncode == 2 and "MANIFEST: not a manifest written by pack" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_members_with_a_piece_missing_are_refused_before_they_travel(tmp_path, sample_archive):
    gpu_session = load_gpu_session()
    whole = gpu_session.tar_of({f"{preset}.pt": bytes(20000) for preset in ENSEMBLES["families"]})
    pieces = []
    for number, piece in enumerate(gpu_session.split(whole, len(whole) // 3 + 1), start=1):
        pieces.append(tmp_path / f"members.tar.{number}")
        pieces[-1].write_bytes(piece)
    assert len(pieces) == 3
    assert gpu_session.joined_members(pieces[::-1]) == whole  # in any order given
    result = subprocess.run([sys.executable, "benchmarks/gpu_session.py", "pack", "--archive", str(sample_archive),
                             "--members", str(pieces[0]), str(pieces[2])], cwd=ROOT, env=gpu_session_env(tmp_path),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "members.tar: piece(s) 2 missing among" in result.stderr
    result = subprocess.run([sys.executable, "benchmarks/gpu_session.py", "pack", "--archive", str(sample_archive),
                             "--members", *map(str, pieces[:2])], cwd=ROOT, env=gpu_session_env(tmp_path),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "members.tar: " in result.stderr and result.stderr.count("\n") == 1


def test_teacher_combinations_are_ranked_on_publictest_alone(sample_faces, monkeypatch):
    spec = importlib.util.spec_from_file_location("teachers", ROOT / "benchmarks" / "teachers.py")
    teachers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(teachers)
    read = []
    original = type(sample_faces).split
    monkeypatch.setattr(type(sample_faces), "split", lambda faces, name: read.append(name) or original(faces, name))
    probabilities, labels = teachers.public_probabilities({"a": "default", "b": "default-fast"}, sample_faces, ["none", "flip"])
    assert read == ["val"]  # PrivateTest never read
    rows = teachers.ranked(probabilities, labels, ["a", "b"], ["none", "flip"])
    assert len(rows) == 6 and [row[0] for row in rows] == sorted((row[0] for row in rows), reverse=True)
    from ferlab.checkpoint import load_model

    public = sample_faces.split("val")
    alone = load_model("default", device="cpu").probabilities(public.images)
    pair = (alone + load_model("default-fast", device="cpu").probabilities(public.images, tta="none")) / 2
    accuracy = {(row[1], row[2]): row[0] for row in rows}
    assert accuracy[("none", ("a",))] == float((alone.argmax(1) == public.labels).double().mean())
    assert accuracy[("none", ("a", "b"))] == float((pair.argmax(1) == public.labels).double().mean())
    assert all("a" in row[2] for row in teachers.ranked(probabilities, labels, ["a", "b"], ["flip"], must="a"))


def test_a_damaged_teacher_is_named_in_one_line(tmp_path, sample_archive):
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"not a checkpoint")
    result = subprocess.run([sys.executable, "benchmarks/teachers.py", "default", str(damaged), "--data", str(sample_archive)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and f"{damaged}: not a PyTorch checkpoint" in result.stderr


def test_input_limits_benchmark_refuses_each_hostile_input_at_its_limit():
    out = run_script("benchmarks/input_limits.py", "--members", "3000", "--side", "800", "--upload-mib", "40")
    assert "limit 3,000 | " in out and "no face images found (expected <train/test>" in out
    assert "limit 2,999 | " in out and "holds over 2,999 entries, the readers' limit" in out
    assert re.search(r"\| photo 800 px wide, found and explained \| [\d.]+ \| \d+ MiB \| 800x937 \(1 MP\), 1 face\(s\) \|", out)
    assert "declared: 413 after 0 MiB read; in chunks: 413 after 21 MiB" in out


def test_startup_benchmark_times_first_answers_beside_a_baseline_source(tmp_path):
    """Each command once, against this checkout's own src as the 'baseline': both columns and a
    ratio per command, the first answers (photo, detect, predict) among them."""
    out = run_script("benchmarks/startup.py", "--repeats", "1", "--baseline-src", str(ROOT / "src"))
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| `")}
    assert {"`ferlab --help`", "`ferlab photo DEMO --model default-fast`", "`Model.detect(DEMO)`",
            "`Model.predict(one 48x48 array)`"} <= set(rows)
    assert all(re.fullmatch(r"\| `.+` \| \d+\.\d\d \| \d+\.\d\d \| \d+\.\d\dx \|", line) for line in rows.values())
