"""Muon for the hidden weight matrices, AdamW for everything else, in one optimiser.

Muon (Jordan et al. 2024, "Muon: an optimizer for hidden layers") keeps a Nesterov momentum of the
gradient and replaces it by the nearest semi-orthogonal matrix (a few Newton-Schulz iterations)
before the step: every direction of a layer's weight moves by the same amount. It is meant for the
hidden layers only; the first layer, the classifier and the vectors (norms, biases) stay on AdamW.
A convolution's (out, in, k, k) weight is treated as the (out, in * k * k) matrix it multiplies by.
``Muon(..., orthogonalizer="spectral")`` computes the iteration's map exactly from one small
eigendecomposition instead (0.79x the time on a 2-core CPU; not better on PublicTest, so not the default).

The step is scaled by 0.2 * sqrt(max(rows, cols)), which gives the update the root-mean-square
size of a typical AdamW update (Liu et al. 2025, "Muon is scalable for LLM training"), so one
learning rate and one decoupled weight decay serve both kinds of parameters and the schedules
apply unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Coefficients of the quintic iteration (Jordan et al.): they push every singular value of a
# normalised matrix into about [0.7, 1.2] in five steps, which is as orthogonal as Muon needs.
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)
RMS_MATCH = 0.2  # AdamW's typical update size per entry


def newton_schulz(matrix: torch.Tensor, steps: int = 5, eps: float = 1e-7,
                  dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """The semi-orthogonal factor U V^T of a 2-D ``matrix`` = U S V^T, approximately (singular
    values land in about [0.7, 1.2], all but those far below the largest, which five steps do
    not lift): the Newton-Schulz iteration on the normalised matrix, in
    ``dtype`` (bf16 halves its cost on a CPU with native bf16, and the iteration tolerates it);
    returned in float32."""
    a, b, c = NEWTON_SCHULZ
    x = matrix.float()
    x = (x / (x.norm() + eps)).to(dtype)  # all singular values now at most 1
    wide = x.shape[0] <= x.shape[1]
    x = x if wide else x.T  # iterate on the smaller Gram matrix
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x if wide else x.T).float()


def spectral(matrix: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """What ``newton_schulz`` computes, without its bf16 rounding, in 0.79x its time on a 2-core
    CPU (the cpu preset's matrices): every step multiplies the matrix by a polynomial of its Gram
    matrix G = X X^T, so the result is Q X with Q a function of G. One eigendecomposition of G
    (rows x rows) gives Q exactly, by running the quintic on G's eigenvalues (the squared singular
    values); two products with the wide matrix replace the iteration's ten. All in float32: a
    bf16 G loses the small singular values that the quintic scales up ~500x. Not for a GPU: there
    the eigendecomposition waits for the device and cannot be graph-captured."""
    a, b, c = NEWTON_SCHULZ
    x = matrix.float()
    x = x / (x.norm() + eps)
    wide = x.shape[0] <= x.shape[1]
    x = x if wide else x.T
    gram = x @ x.T
    if not torch.isfinite(gram).all():  # a diverged step: let the NaNs through, as the iteration does
        return newton_schulz(matrix, steps, eps)
    squares, vectors = torch.linalg.eigh(gram)
    squares, scale = squares.clamp_min(0), torch.ones_like(squares)
    for _ in range(steps):  # sigma -> sigma * p(sigma^2), tracked as the factor and the new square
        factor = a + b * squares + c * squares * squares
        scale, squares = scale * factor, squares * factor * factor
    result = ((vectors * scale) @ vectors.T) @ x
    return result if wide else result.T


# name -> how a momentum matrix becomes (nearly) semi-orthogonal; the same map of its singular values.
ORTHOGONALIZERS = {"newton-schulz": newton_schulz, "spectral": spectral}


def hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The weights Muon should move: every parameter of two or more dimensions except the first
    (it reads the pixels) and the last (the classifier), in registration order."""
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    return matrices[1:-1]


class Muon(torch.optim.Optimizer):
    """Muon on the param groups marked ``muon=True``, AdamW on the others; ``lr`` and
    ``weight_decay`` (decoupled) are shared and may be set per group as usual."""

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.95,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, ns_steps: int = 5,
                 orthogonalizer: str = "newton-schulz"):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, betas=betas, eps=eps,
                        ns_steps=ns_steps, orthogonalizer=orthogonalizer, muon=False)
        if orthogonalizer not in ORTHOGONALIZERS:
            raise ValueError(f"orthogonalizer {orthogonalizer!r}: expected one of {', '.join(ORTHOGONALIZERS)}")
        super().__init__(params, defaults)

    @classmethod
    def for_model(cls, model: nn.Module, **options) -> "Muon":
        hidden = {id(p) for p in hidden_matrices(model)}
        groups = [{"params": [p for p in model.parameters() if id(p) in hidden], "muon": True},
                  {"params": [p for p in model.parameters() if id(p) not in hidden], "muon": False}]
        return cls([g for g in groups if g["params"]], **options)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.mul_(1 - group["lr"] * group["weight_decay"])  # decoupled decay, as in AdamW
                (muon_step if group["muon"] else adam_step)(p, self.state[p], group)
        return loss


def muon_step(p: torch.Tensor, state: dict, group: dict) -> None:
    momentum = group["momentum"]
    if "momentum_buffer" not in state:
        state["momentum_buffer"] = torch.zeros_like(p)
    buffer = state["momentum_buffer"].mul_(momentum).add_(p.grad)
    nesterov = p.grad.add(buffer, alpha=momentum)
    rows, cols = p.shape[0], p[0].numel()
    orthogonalize = ORTHOGONALIZERS[group["orthogonalizer"]]
    update = orthogonalize(nesterov.reshape(rows, cols), group["ns_steps"]).view_as(p)
    p.add_(update.to(p.dtype), alpha=-group["lr"] * RMS_MATCH * math.sqrt(max(rows, cols)))


def adam_step(p: torch.Tensor, state: dict, group: dict) -> None:
    beta1, beta2 = group["betas"]
    if "step" not in state:
        state["step"], state["exp_avg"], state["exp_avg_sq"] = 0, torch.zeros_like(p), torch.zeros_like(p)
    state["step"] += 1
    state["exp_avg"].lerp_(p.grad, 1 - beta1)
    state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
    denominator = (state["exp_avg_sq"] / (1 - beta2 ** state["step"])).sqrt_().add_(group["eps"])
    p.addcdiv_(state["exp_avg"], denominator, value=-group["lr"] / (1 - beta1 ** state["step"]))
