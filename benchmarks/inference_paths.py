"""Batch inference on the CPU by other routes than ferlab's one inference path, side by side with
it in one run: faces/s (best of interleaved rounds) and how often each route's label equals the
path's. The routes: the path itself (``LoadedModel.logits``: bf16 autocast, channels-last), the
same under ``torch.inference_mode``, float32 (what ``Model.network`` gives a caller's own code),
weights cast to bf16 instead of autocast, TorchScript frozen (float32 and optimised for inference;
under bf16 autocast) and, with ``--compile``, torch.compile of the bf16 model (its compilation time
printed). ``--test-accuracy`` adds each route's PrivateTest accuracy: read, never chosen on.

    python benchmarks/inference_paths.py [--model default-fast] [--faces 4096] [--batch 512] [--rounds 3] [--compile]
                                         [--test-accuracy]
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ferlab.checkpoint import load_model
from ferlab.data import load_faces
from ferlab.device import reuse_freed_memory

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "fer2013-images.tar.xz"


def batched(net: Callable, prepare: Callable, faces: torch.Tensor, batch: int, autocast: bool) -> torch.Tensor:
    """(N, 7) float32 logits of ``net`` over ``faces`` in batches, each batch ``prepare``d."""
    outputs = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        for start in range(0, len(faces), batch):
            outputs.append(net(prepare(faces[start:start + batch])).float())
    return torch.cat(outputs)


def routes(loaded, example: torch.Tensor, batch: int, compile_too: bool) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    model = loaded.model.eval().requires_grad_(False)
    as_float = lambda images: loaded.normalization.apply(images).contiguous(memory_format=torch.channels_last)  # noqa: E731
    as_bf16 = lambda images: as_float(images).to(torch.bfloat16)  # noqa: E731
    bf16_model = copy.deepcopy(model).to(torch.bfloat16)
    with torch.no_grad():
        scripted = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(copy.deepcopy(model), example)))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            scripted_bf16 = torch.jit.freeze(torch.jit.trace(copy.deepcopy(model), example))
    found = {
        "inference path": lambda faces: loaded.logits(faces, batch_size=batch),
        "inference_mode": lambda faces: batched(model, as_float, faces, batch, True),
        "float32 (Model.network)": lambda faces: batched(model, as_float, faces, batch, False),
        "bf16 weights": lambda faces: batched(bf16_model, as_bf16, faces, batch, False),
        "TorchScript float32, optimised": lambda faces: batched(scripted, as_float, faces, batch, False),
        "TorchScript frozen, bf16 autocast": lambda faces: batched(scripted_bf16, as_float, faces, batch, True),
    }
    if compile_too:
        compiled = torch.compile(copy.deepcopy(bf16_model), dynamic=False)
        started = time.perf_counter()
        batched(compiled, as_bf16, torch.zeros(batch, *example.shape[2:], dtype=torch.uint8), batch, False)  # compiles
        print(f"torch.compile: {time.perf_counter() - started:.1f} s to compile")
        found["torch.compile, bf16 weights"] = lambda faces: batched(compiled, as_bf16, faces, batch, False)
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default-fast")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--faces", type=int, default=4096, help="Training faces per timed pass")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (compiles for a while first)")
    parser.add_argument("--test-accuracy", action="store_true", help="also each route's PrivateTest accuracy")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reuse_freed_memory(torch.device("cpu"))
    faces = load_faces(args.data)
    pool = faces.split("train").images[: args.faces]
    loaded = load_model(args.model, device="cpu")
    batch = min(args.batch, len(pool))
    example = loaded.normalization.apply(pool[:batch]).contiguous(memory_format=torch.channels_last)
    found = routes(loaded, example, batch, args.compile)
    reference = found["inference path"](pool).argmax(1)
    agreement = {name: float((route(pool).argmax(1) == reference).double().mean()) for name, route in found.items()}
    speeds: dict[str, list[float]] = {name: [] for name in found}
    for _ in range(args.rounds):
        for name, route in found.items():
            started = time.perf_counter()
            route(pool)
            speeds[name].append(len(pool) / (time.perf_counter() - started))
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}; {args.model}, {len(pool)} faces in batches of {batch}, best of {args.rounds} rounds\n")
    test = faces.split("test") if args.test_accuracy else None
    accuracy = {} if test is None else \
        {name: float((route(test.images).argmax(1) == test.labels).double().mean()) for name, route in found.items()}
    heading = " | PrivateTest accuracy (read, not chosen on)" if test is not None else ""
    print(f"| route | faces/s | ratio to the inference path | labels equal to the path's{heading} |\n"
          f"| --- | --- | --- | ---{' | ---' if heading else ''} |")
    base = max(speeds["inference path"])
    for name, measured in speeds.items():
        extra = f" | {accuracy[name]:.2%}" if test is not None else ""
        print(f"| {name} | {max(measured):,.0f} | {max(measured) / base:.2f}× | {agreement[name]:.2%}{extra} |")


if __name__ == "__main__":
    main()
