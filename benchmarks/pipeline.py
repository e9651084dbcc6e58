"""Input pipeline: ferlab's device-resident uint8 data + batched augmentation against the standard
``torch.utils.data.DataLoader`` + torchvision-transforms pipeline, same model, batch size, optimiser
and augmentation policy, measured side by side in one process.

    python benchmarks/pipeline.py [--data PATH] [--model fastnet] [--steps 60] [--workers 2]
                                  [--compile default reduce-overhead]

On a GPU it times whole epochs by default (--steps 0); on a CPU, --steps steps of each. Each
``--compile`` mode adds a row: ferlab's pipeline with the model under ``torch.compile(mode=...)``
(compilation happens in the untimed warm-up steps).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from ferlab.config import resolve_config
from ferlab.data import load_faces
from ferlab.data.normalize import Normalization
from ferlab.device import autocast_for
from ferlab.training import choose_device, start_training, train_one_epoch

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013" / "fer2013-images.tar.xz"


class Faces(Dataset):
    """The usual way: one PIL image per item, transformed on the CPU by DataLoader workers."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images, self.labels, self.transform = images.numpy(), labels.numpy(), transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.transform(Image.fromarray(self.images[index], mode="L")), int(self.labels[index])


def baseline_transform(config, normalization: Normalization):
    return transforms.Compose([
        transforms.RandomAffine(degrees=config.rotate, translate=(config.shift, config.shift),
                                scale=(1 - config.zoom, 1 + config.zoom), shear=config.shear),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),  # [0, 1]
        transforms.Normalize([normalization.mean], [normalization.std]),
    ])


def time_baseline(model, optimizer, config, normalization, images, labels, device, steps, workers) -> float:
    loader = DataLoader(Faces(images, labels, baseline_transform(config, normalization)), batch_size=config.batch_size,
                        shuffle=True, drop_last=True, num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0)
    model.train()

    def run(limit):
        done = 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast_for(device, config.mixed_precision):
                loss = F.cross_entropy(model(x).float(), y, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if limit and done >= limit:
                break
        return done

    run(3)  # warm-up: workers started, kernels chosen
    synchronize(device)
    started = time.perf_counter()
    done = run(steps)
    synchronize(device)
    return (time.perf_counter() - started) / done


def time_ferlab(model, optimizer, config, normalization, images, labels, device, steps, teachers=None) -> float:
    images, labels = images.to(device), labels.to(device)
    whole = len(images) // config.batch_size  # steps the faces hold: fewer than asked on a small set
    if whole == 0:
        raise SystemExit(f"{len(images)} training faces: fewer than one batch of {config.batch_size}")
    count = min(steps or whole, whole) * config.batch_size
    common = dict(config=config, normalization=normalization, lr_for_step=lambda step: config.lr, progress=False,
                  teachers=teachers)
    train_one_epoch(model, optimizer, images[: 3 * config.batch_size], labels[: 3 * config.batch_size],
                    generator=torch.Generator(device=device).manual_seed(0), **common)
    synchronize(device)
    started = time.perf_counter()
    train_one_epoch(model, optimizer, images[:count], labels[:count],
                    generator=torch.Generator(device=device).manual_seed(1), **common)
    synchronize(device)
    return (time.perf_counter() - started) / (count // config.batch_size)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--model", default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="steps timed per pipeline (0: a whole epoch)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the baseline")
    parser.add_argument("--compile", nargs="*", default=[], metavar="MODE",
                        help="also time ferlab with torch.compile in these modes (default, reduce-overhead, ...)")
    args = parser.parse_args()
    device = choose_device("auto")
    steps = args.steps if args.steps is not None else (0 if device.type == "cuda" else 60)
    config = resolve_config(args.preset, overrides={"model": args.model, "batch_size": args.batch_size})
    train = load_faces(args.data).split("train")
    normalization = Normalization.fit("standardize", train.images)
    seconds, labels = {}, {"baseline": f"DataLoader + torchvision transforms ({args.workers} workers)",
                            "ferlab": "ferlab: uint8 on device, batched affine augmentation"}
    for name in ("ferlab", "baseline", *(f"compile-{mode}" for mode in args.compile)):
        model, optimizer, *_ = start_training(config, train.images, device, resume_from=None)  # same seed each
        if name == "baseline":
            seconds[name] = time_baseline(model, optimizer, config, normalization, train.images, train.labels, device,
                                          steps, args.workers)
            continue
        if name.startswith("compile-"):
            mode = name.removeprefix("compile-")
            model, labels[name] = torch.compile(model, mode=mode), f"ferlab + torch.compile(mode={mode!r})"
        seconds[name] = time_ferlab(model, optimizer, config, normalization, train.images, train.labels, device, steps)
    steps_per_epoch = len(train) // config.batch_size
    print(f"\ndevice: {torch.cuda.get_device_name() if device.type == 'cuda' else platform.processor() or 'cpu'}; "
          f"torch {torch.__version__}; model {config.model}, batch {config.batch_size}, "
          f"{'whole epochs' if not steps else f'{steps} timed steps'}; {time.strftime('%Y-%m-%d')}\n")
    print("| pipeline | ms/step | epoch (s, 28,709 faces) | images/s |\n| --- | --- | --- | --- |")
    for name, label in labels.items():
        print(f"| {label} | {1000 * seconds[name]:.1f} | {seconds[name] * steps_per_epoch:.1f} | "
              f"{config.batch_size / seconds[name]:.0f} |")
    print()
    for name in [name for name in labels if name != "baseline"]:
        print(f"epoch-time ratio baseline / {name}: {seconds['baseline'] / seconds[name]:.2f}x")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
