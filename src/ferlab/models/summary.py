"""A Keras-style layer table: layer, output shape, parameters."""

from __future__ import annotations

import torch
from torch import nn

from ferlab.labels import IMAGE_SIZE


def summarize(model: nn.Module) -> tuple[list[tuple[str, str, tuple[int, ...], int]], int]:
    """Run one gray 48x48 face through ``model`` (in eval mode, no gradients) and return rows of
    (name, layer type, output shape without the batch, own parameters) for every leaf module, and
    the total parameter count. The model's mode is restored and no hook is left behind."""
    rows: list[tuple[str, str, tuple[int, ...], int]] = []
    handles = []
    for name, module in model.named_modules():
        if next(module.children(), None) is None:  # leaves only
            def record(mod, _inputs, output, name=name):
                shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()
                rows.append((name, mod.__class__.__name__, shape, sum(p.numel() for p in mod.parameters(recurse=False))))
            handles.append(module.register_forward_hook(record))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            device = next(model.parameters()).device
            model(torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return rows, sum(p.numel() for p in model.parameters())


def format_summary(model_name: str, model: nn.Module) -> str:
    rows, total = summarize(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    width = max([len(f"{n} ({t})") for n, t, _, _ in rows] + [20])
    lines = [f'Model: "{model_name}"', "-" * (width + 36),
             f"{'Layer (type)':<{width}}  {'Output shape':<20}  {'Param #':>10}", "=" * (width + 36)]
    for name, kind, shape, params in rows:
        lines.append(f"{f'{name} ({kind})':<{width}}  {str(shape):<20}  {params:>10,}")
    lines += ["=" * (width + 36), f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}"]
    return "\n".join(lines)
