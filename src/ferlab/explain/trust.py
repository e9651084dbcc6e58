"""How far an explanation can be trusted.

- Deletion / insertion (Petsiuk et al., RISE, BMVC 2018): remove (or add) pixels from most to least
  important, 48 steps of 48 pixels, and track the target-class probability. A faithful map drops
  the probability faster than a random order under deletion (lower AUC) and raises it faster under
  insertion (higher AUC). Removed pixels take ``fill``, the training-mean gray level by default.
- Model-randomisation sanity check (Adebayo et al., NeurIPS 2018): re-initialise every weight and
  compare the maps of the trained and the random model by Spearman rank correlation of |map|. A
  method that explains the model changes; one whose maps barely change explains the image.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from scipy.stats import spearmanr
from torch import nn

from ferlab.device import autocast_for
from ferlab.explain import NotApplicable, get_method
from ferlab.explain.common import evaluation_mode, model_device

SANITY_THRESHOLD = 0.5  # mean rank correlation above this: the maps do not depend on the weights
MARGIN = 0.01  # AUC difference (in class probability) a map needs over the random order to count


def has_weights(model: nn.Module) -> bool:
    """Whether ``model`` has weights the randomisation check can re-initialise: parameters, or an
    ONNX graph's initializers (its ``randomized``)."""
    return hasattr(model, "randomized") or next(model.parameters(), None) is not None


def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every layer re-initialised (and batch-norm statistics reset); a
    model that redraws its own weights (an ONNX graph, ``ferlab.graph.GraphNetwork``) does so."""
    if hasattr(model, "randomized"):
        return model.randomized(seed)
    clone = copy.deepcopy(model)
    torch.manual_seed(seed)
    for module in clone.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        if hasattr(module, "reset_running_stats"):
            module.reset_running_stats()
    return clone


def perturbation_curves(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                        steps: int = 48, fill: float = 0.0, batch_size: int = 512,
                        mixed_precision: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Deletion and insertion curves, each (N, steps + 1): target probability after k steps.
    The 2 x 49 forward passes per face run in bf16 where the device has it natively (the
    probabilities move by well under the 0.01 margin the verdicts use)."""
    n, pixels = images.shape[0], images[0].numel()
    per_step = pixels // steps
    order = maps.flatten(1).argsort(dim=1, descending=True, stable=True)  # (N, pixels)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(pixels).expand(n, pixels))
    k = torch.arange(steps + 1)[None, :, None] * per_step  # (1, steps + 1, 1)
    removed = rank[:, None, :] < k  # (N, steps + 1, pixels): True where the pixel is among the first k
    flat = images.flatten(1)[:, None, :].cpu()
    deleted = torch.where(removed, torch.full_like(flat, fill), flat)
    inserted = torch.where(removed, flat, torch.full_like(flat, fill))
    curves = []
    device = model_device(model)
    with evaluation_mode(model), torch.no_grad(), autocast_for(device, mixed_precision):
        for variants in (deleted, inserted):
            x = variants.reshape(-1, *images.shape[1:])
            probs = torch.cat([model(x[i:i + batch_size].to(device)).float().softmax(1).cpu()
                               for i in range(0, len(x), batch_size)])
            target_rows = targets.repeat_interleave(steps + 1)
            curves.append(probs[torch.arange(len(x)), target_rows].reshape(n, steps + 1))
    return curves[0], curves[1]


def area_under(curves: torch.Tensor) -> torch.Tensor:
    """Trapezoid area of each curve over [0, 1]."""
    return torch.trapezoid(curves, dx=1.0 / (curves.shape[1] - 1), dim=1)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation of |a_i| and |b_i| per map; 1.0 where a map is constant (no ranking)."""
    values = []
    for x, y in zip(a.flatten(1).abs().numpy(), b.flatten(1).abs().numpy()):
        rho = spearmanr(x, y).statistic if x.std() > 0 and y.std() > 0 else 1.0
        values.append(float(rho))
    return torch.tensor(values)


@dataclass(frozen=True)
class TrustResult:
    method: str
    deletion_auc: float
    insertion_auc: float
    random_deletion_auc: float
    random_insertion_auc: float
    randomization_rho: float   # mean Spearman rho, trained vs re-initialised model (NaN: it has no weights)
    note: str = ""
    curves: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False, compare=False)

    @property
    def unchecked(self) -> bool:
        """No randomisation check was possible (a model without weights)."""
        return math.isnan(self.randomization_rho) and not self.note

    @property
    def passes_sanity(self) -> bool:
        return self.randomization_rho < SANITY_THRESHOLD

    @property
    def beats_deletion(self) -> bool:
        return self.deletion_auc < self.random_deletion_auc - MARGIN

    @property
    def beats_insertion(self) -> bool:
        return self.insertion_auc > self.random_insertion_auc + MARGIN

    @property
    def faithful(self) -> bool:
        return self.beats_deletion and self.beats_insertion

    def verdict(self) -> str:
        if self.note:
            return self.note
        sanity = ("no randomisation check (the model has no weights to re-initialise)" if self.unchecked else
                  f"passes the randomisation check (ρ={self.randomization_rho:.2f})" if self.passes_sanity else
                  f"FAILS the randomisation check (ρ={self.randomization_rho:.2f}: the map barely depends on the weights)")
        missed = [test for test, beaten in (("deletion", self.beats_deletion), ("insertion", self.beats_insertion))
                  if not beaten]
        faith = ("beats a random order at deletion and insertion" if not missed else
                 f"does not beat a random order at {' and '.join(missed)} (by {MARGIN} or more)")
        return f"{sanity}; {faith}"


def random_baseline(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, fill: float = 0.0,
                    seed: int = 0, steps: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Deletion and insertion curves of a random pixel order: the bar a map has to beat."""
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(seed))
    return perturbation_curves(model, images, noise, targets, steps=steps, fill=fill)


def assess(method, model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, name: str = "",
           fill: float = 0.0, seed: int = 0, options: dict | None = None,
           baseline: tuple[torch.Tensor, torch.Tensor] | None = None, steps: int = 48) -> TrustResult:
    """Deletion/insertion AUC (method vs random order) and the randomisation check of one method
    (a registered name or a callable with the common signature) on ``images``. ``baseline``: the
    random-order curves from ``random_baseline``, if already computed (with the same ``steps``)."""
    function = get_method(method) if isinstance(method, str) else method
    name = name or (method if isinstance(method, str) else getattr(method, "__name__", "method"))
    options = options or {}
    try:
        maps = function(model, images, targets, **options)
        random_model_maps = (function(randomized_copy(model, seed), images, targets, **options) if has_weights(model)
                             else None)  # a model without weights: nothing to re-initialise
    except NotApplicable as error:
        nan = float("nan")
        return TrustResult(name, nan, nan, nan, nan, nan, note=f"not applicable: {error}")
    deletion, insertion = perturbation_curves(model, images, maps, targets, steps=steps, fill=fill)
    random_deletion, random_insertion = baseline or random_baseline(model, images, targets, fill=fill, seed=seed,
                                                                    steps=steps)
    return TrustResult(name, float(area_under(deletion).mean()), float(area_under(insertion).mean()),
                       float(area_under(random_deletion).mean()), float(area_under(random_insertion).mean()),
                       float(rank_correlation(maps, random_model_maps).mean()) if random_model_maps is not None
                       else float("nan"), curves=(deletion, insertion))
