"""onnxruntime against PyTorch on the CPU: the exported ONNX file's throughput beside the model's.

    OMP_NUM_THREADS=2 python benchmarks/exported.py [--model default] [--faces 2048] [--repeats 5] [--int8]

Exports the model (``ferlab export -o model.onnx``), then times the same real faces (the sample
archive's, repeated) through onnxruntime's CPU provider and through PyTorch in float32 and in the
model's own precision (bf16 autocast where the CPU has it), at batches of 1, 64 and 256, side by side
in one process. Prints a Markdown table and the largest logit difference.

Each graph is also timed as ``ferlab evaluate``/``predict``/``photo`` run it (``load_model(path,
graphs=True)``: the one inference path in front of the same onnxruntime session), and once more
without the one change that path makes for a graph (PyTorch on one thread while onnxruntime runs).

``--int8`` adds the graph ``ferlab export --int8`` writes (onnxruntime's static quantisation: QDQ,
weights per channel, activation ranges calibrated on 512 of the data's Training faces, the
classifier and softmax left in float) as one more runtime, with its check on the data's PublicTest
and how often its labels agree with float32's on the faces timed.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ferlab.checkpoint import LoadedModel, load_model, read_checkpoint, resolve_checkpoint
from ferlab.data import load_faces
from ferlab.evaluation import infer
from ferlab.export import export_int8, export_model, session_labels

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013" / "fer2013-sample.tar.gz"


def median_rate(function, faces: int, repeats: int) -> float:
    """Faces per second, the median over ``repeats`` timed calls after one warm-up."""
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return faces / float(np.median(times))


def main() -> None:
    import onnxruntime

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", default=str(SAMPLE), help="real faces to time (repeated up to --faces)")
    parser.add_argument("--faces", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--int8", action="store_true", help="also time onnxruntime's static int8 quantisation")
    args = parser.parse_args()
    loaded = load_model(args.model)
    data = load_faces(args.data)
    real = data.images
    faces = real.repeat((args.faces + len(real) - 1) // len(real), 1, 1)[: args.faces]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_model(read_checkpoint(resolve_checkpoint(args.model)), path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        sessions = {"onnxruntime (CPU provider)": session}
        graphs = {"the same graph through ferlab (LoadedModel.logits)": load_model(path, graphs=True)}
        if args.int8:
            check = export_int8(read_checkpoint(resolve_checkpoint(args.model)), path.with_suffix(".int8.onnx"), data)
            print(f"int8 check: {check.describe()}")
            sessions["onnxruntime int8 (ferlab export --int8)"] = onnxruntime.InferenceSession(
                str(path.with_suffix(".int8.onnx")), options, providers=["CPUExecutionProvider"])
            graphs["the int8 graph through ferlab"] = load_model(path.with_suffix(".int8.onnx"), graphs=True)
    difference = np.abs(session.run(None, {"faces": faces.numpy()})[0] - infer(loaded.model, faces, loaded.normalization).numpy()).max()
    rows = []
    for batch in (1, 64, 256):
        count = min(len(faces), 256 if batch == 1 else len(faces))
        chunks = [faces[i:i + batch] for i in range(0, count, batch)]
        numpy_chunks = [c.numpy() for c in chunks]
        for name, runtime in sessions.items():
            rows.append((batch, name, median_rate(lambda: [runtime.run(None, {"faces": c}) for c in numpy_chunks],
                                                  count, args.repeats)))
        for name, graph in graphs.items():  # what ferlab's commands get from a graph: its views, calibration, batches
            rows.append((batch, name, median_rate(lambda: [graph.logits(c, batch_size=batch) for c in chunks], count, args.repeats)))
        first_graph = next(iter(graphs.values()))  # without GraphModel's one_torch_thread: PyTorch's threads spin beside it
        rows.append((batch, "the same graph through ferlab, PyTorch's threads left spinning",
                     median_rate(lambda: [LoadedModel.logits(first_graph, c, batch_size=batch) for c in chunks],
                                 count, args.repeats)))
        rows.append((batch, "PyTorch float32",
                     median_rate(lambda: [infer(loaded.model, c, loaded.normalization, batch_size=batch) for c in chunks],
                                 count, args.repeats)))
        rows.append((batch, "PyTorch, the model's precision (LoadedModel.logits)",
                     median_rate(lambda: [loaded.logits(c, batch_size=batch) for c in chunks], count, args.repeats)))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; "
          f"model {args.model} ({loaded.config.model}); {time.strftime('%Y-%m-%d')}\n")
    print("| batch | runtime | faces/s | vs PyTorch float32 |\n| --- | --- | --- | --- |")
    for batch, name, rate in rows:
        base = next(r for b, n, r in rows if b == batch and n == "PyTorch float32")
        print(f"| {batch} | {name} | {rate:.0f} | {rate / base:.2f}x |")
    print(f"\nlargest |logit difference|, ONNX vs PyTorch float32, on {len(faces)} faces: {difference:.2e}")
    if args.int8:
        distinct = real[: args.faces]  # in batches: all 35,887 faces at once would need 21 GB
        first, second = (session_labels(runtime, distinct) for runtime in sessions.values())
        print(f"int8 labels equal to float32's on {100 * float((first == second).float().mean()):.1f}% of the {len(distinct)} distinct faces")


if __name__ == "__main__":
    main()
