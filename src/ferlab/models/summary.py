"""A layer table in torchinfo's columns: layer, output shape, parameters, mult-adds, and the sizes
torchinfo reports (input, forward/backward pass, parameters; float32, batch of one).

Mult-adds are counted as torchinfo counts them (``mult_adds``); a convolution's output size follows
(W + 2P - K) / S + 1 (docs/derivations.md).
"""

from __future__ import annotations

import torch
from torch import nn

from ferlab.labels import IMAGE_SIZE


def output_side(width: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """A convolution's (or pooling's) output size along one axis: floor((W + 2P - D(K - 1) - 1) / S) + 1,
    which is (W + 2P - K) / S + 1 for dilation 1 and exact division (docs/derivations.md)."""
    return (width + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def mult_adds(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulate operations of one leaf layer for its (batch-of-one) output, counted as
    torchinfo counts them: a convolution applies its weights (and bias) at every output position,
    out_channels x in_channels/groups x K x K (+ out_channels) per position; a linear layer uses
    each weight and bias once; any other layer with parameters (batch norm) once per parameter."""
    own = sum(p.numel() for p in module.parameters(recurse=False))
    if isinstance(module, nn.Conv2d):
        return own * output.shape[-1] * output.shape[-2]
    return own


Row = tuple[str, str, tuple[int, ...], int, int]  # name, type, output shape, own parameters, mult-adds


def summarize(model: nn.Module) -> tuple[list[Row], int]:
    """Run one gray 48x48 face through ``model`` (in eval mode, no gradients) and return rows of
    (name, layer type, output shape without the batch, own parameters, mult-adds) for every leaf
    module, and the total parameter count. The model's mode is restored and no hook is left behind."""
    rows: list[Row] = []
    handles = []
    for name, module in model.named_modules():
        if next(module.children(), None) is None:  # leaves only
            def record(mod, _inputs, output, name=name):
                shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()
                operations = mult_adds(mod, output) if isinstance(output, torch.Tensor) else 0
                rows.append((name, mod.__class__.__name__, shape, sum(p.numel() for p in mod.parameters(recurse=False)),
                             operations))
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


def megabytes(values: int) -> float:
    return values * 4 / 1e6  # float32, as torchinfo counts


def format_summary(model_name: str, model: nn.Module) -> str:
    rows, total = summarize(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    width = max([len(f"{n} ({t})") for n, t, *_ in rows] + [20])
    rule = width + 50
    lines = [f'Model: "{model_name}"', "-" * rule,
             f"{'Layer (type)':<{width}}  {'Output Shape':<20}  {'Param #':>10}  {'Mult-Adds':>12}", "=" * rule]
    for name, kind, shape, params, operations in rows:
        lines.append(f"{f'{name} ({kind})':<{width}}  {str(shape):<20}  {params:>10,}  {operations:>12,}")
    # Activations kept for the backward pass, as torchinfo counts them: outputs of layers with parameters.
    activations = sum(int(torch.tensor(shape).prod()) for _, _, shape, params, _ in rows if shape and params)
    inputs, passes, parameters = megabytes(IMAGE_SIZE * IMAGE_SIZE), megabytes(2 * activations), megabytes(total)
    lines += ["=" * rule, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}",
              f"Total mult-adds (M): {sum(r[4] for r in rows) / 1e6:.2f}", "=" * rule,
              f"Input size (MB): {inputs:.2f}", f"Forward/backward pass size (MB): {passes:.2f}",
              f"Params size (MB): {parameters:.2f}", f"Estimated Total Size (MB): {inputs + passes + parameters:.2f}"]
    return "\n".join(lines)
