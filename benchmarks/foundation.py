"""Foundation benchmark: data decoding and caching, CPU training throughput, peak memory.

    python benchmarks/foundation.py [--data ../shared/data/fer2013/fer2013-images.tar.xz] [--steps 20]

Each measurement runs in its own process so its peak resident memory (ru_maxrss) is its own.
Prints a markdown table to paste into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "fer2013-images.tar.xz"


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_decode(args) -> dict:
    from ferlab.data import load_faces

    started = time.perf_counter()
    faces = load_faces(args.data, use_cache=False)
    return {"seconds": time.perf_counter() - started, "faces": len(faces)}


def phase_write_csv(args) -> dict:
    """Build a challenge-format fer2013.csv from the archive (not timed as a reader)."""
    from ferlab.data import load_faces
    from ferlab.labels import SPLITS

    faces = load_faces(args.data)
    usage = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
    with open(args.csv, "w") as file:
        file.write("emotion,pixels,Usage\n")
        for image, label, split in zip(faces.images.numpy(), faces.labels.tolist(), faces.splits.tolist()):
            file.write(f"{label},{' '.join(map(str, image.flatten().tolist()))},{usage[SPLITS[split]]}\n")
    return {"bytes": os.path.getsize(args.csv)}


def phase_decode_csv(args) -> dict:
    from ferlab.data import load_faces

    started = time.perf_counter()
    faces = load_faces(args.csv, use_cache=False)
    return {"seconds": time.perf_counter() - started, "faces": len(faces)}


def phase_cached(args) -> dict:
    from ferlab.data import load_faces

    load_faces(args.data)  # make sure the entry exists
    times = []
    for _ in range(3):
        started = time.perf_counter()
        load_faces(args.data)
        times.append(time.perf_counter() - started)
    return {"seconds": min(times), "seconds_all": times}


def phase_train(args) -> dict:
    """Images/s of train steps (augmentation, forward, backward, update) on real faces."""
    import torch

    from ferlab.config import resolve_config
    from ferlab.data import load_faces
    from ferlab.data.normalize import Normalization
    from ferlab.models import build_model
    from ferlab.training import make_optimizer, train_one_epoch

    faces = load_faces(args.data).split("train")
    config = resolve_config("cpu", overrides={"model": args.model, "mixed_precision": args.precision == "bf16",
                                              "channels_last": args.model != "dnn"})
    torch.manual_seed(0)
    model = build_model(config.model)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    normalization = Normalization.fit(config.normalization, faces.images)
    warmup, measured = 3 * config.batch_size, args.steps * config.batch_size
    common = dict(config=config, normalization=normalization, lr_for_step=lambda step: config.lr, progress=False)
    train_one_epoch(model, optimizer, faces.images[:warmup], faces.labels[:warmup],
                    generator=torch.Generator().manual_seed(0), **common)
    stats = train_one_epoch(model, optimizer, faces.images[warmup:warmup + measured],
                            faces.labels[warmup:warmup + measured], generator=torch.Generator().manual_seed(1), **common)
    return {"images_per_second": measured / stats["seconds"], "batch_size": config.batch_size}


PHASES = {"decode": phase_decode, "write_csv": phase_write_csv, "decode_csv": phase_decode_csv,
          "cached": phase_cached, "train": phase_train}


def run_phase(name: str, args, **extra) -> dict:
    command = [sys.executable, __file__, "--phase", name, "--data", str(args.data), "--csv", str(args.csv),
               "--steps", str(args.steps)] + [f"--{k}={v}" for k, v in extra.items()]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--csv", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=20, help="measured training steps per model")
    parser.add_argument("--phase", choices=sorted(PHASES))
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    if args.phase:
        result = PHASES[args.phase](args)
        print(json.dumps({**result, "peak_mib": peak_mib()}))
        return

    import torch

    with tempfile.TemporaryDirectory() as folder:
        os.environ["FERLAB_CACHE"] = str(Path(folder) / "cache")  # a cold cache, removed afterwards
        args.csv = args.csv or Path(folder) / "fer2013.csv"
        rows = []
        decode = run_phase("decode", args)
        rows.append(("decode full archive (.tar.xz, 35,887 JPEGs)", f"{decode['seconds']:.1f} s", decode["peak_mib"]))
        written = run_phase("write_csv", args)
        decode_csv = run_phase("decode_csv", args)
        rows.append((f"decode full fer2013.csv ({written['bytes'] / 2**20:.0f} MiB)", f"{decode_csv['seconds']:.1f} s",
                     decode_csv["peak_mib"]))
        cached = run_phase("cached", args)
        rows.append(("cached load (best of 3)", f"{cached['seconds']:.2f} s", cached["peak_mib"]))
        for model in ("cnn", "dnn", "fastnet"):
            for precision in ("fp32", "bf16"):
                train = run_phase("train", args, model=model, precision=precision)
                rows.append((f"train {model}, {precision}, batch {train['batch_size']} (augmentation included)",
                             f"{train['images_per_second']:.0f} images/s", train["peak_mib"]))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}; "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| measurement | result | peak memory (MiB) |\n| --- | --- | --- |")
    for name, result, peak in rows:
        print(f"| {name} | {result} | {peak:.0f} |")


if __name__ == "__main__":
    main()
