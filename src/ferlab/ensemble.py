"""Ensembles: combine several models' class probabilities, with equal weights or weights fitted on
PublicTest (never on PrivateTest), and evaluate the combination like a single model."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def combine(probabilities: list[torch.Tensor], weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean of (N, 7) probability tensors; equal weights by default. Returns (N, 7)."""
    stacked = torch.stack(probabilities)  # (M, N, 7)
    if weights is None:
        weights = torch.full((len(probabilities),), 1.0 / len(probabilities))
    return torch.einsum("m,mnc->nc", weights.to(stacked.dtype), stacked)


def fit_weights(probabilities: list[torch.Tensor], labels: torch.Tensor, steps: int = 300, lr: float = 0.1) -> torch.Tensor:
    """Non-negative weights summing to one that minimise the negative log-likelihood of the
    combination on the given (validation) faces; a softmax over free parameters keeps them valid."""
    stacked = torch.stack(probabilities).double()
    logits = torch.zeros(len(probabilities), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=lr)
    for _ in range(steps):
        mixed = torch.einsum("m,mnc->nc", logits.softmax(0), stacked)
        loss = F.nll_loss(mixed.clamp_min(1e-12).log(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return logits.detach().softmax(0).float()
