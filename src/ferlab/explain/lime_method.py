"""LIME (Ribeiro et al. 2016) with the ``lime`` package, on SLIC superpixels of the 48x48 face.

LIME's default segmentation (quickshift) finds a single segment on a 48x48 face; SLIC asked for 50
gives about 35 superpixels (measured on the sample faces), each the size of an eye or a mouth corner. The raw map gives each pixel
the weight of its superpixel: positive pushes towards the class, negative against it.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from torch import nn

from ferlab.device import autocast_for
from ferlab.explain import register_method
from ferlab.explain.common import check_finite, check_whole, evaluation_mode, model_device, resolve_targets


MAX_SAMPLES = 100_000  # perturbed copies of one face: 20 s to minutes a face; 1e20 was a traceback, 1e8 asked for 25 GiB


def superpixels(image: np.ndarray, segments: int = 50) -> np.ndarray:
    """(48, 48[, 3]) image -> (48, 48) int segment labels, about ``segments`` of them."""
    from skimage.segmentation import slic  # here, not at import: see ferlab.explain

    gray = image[..., 0] if image.ndim == 3 else image
    span = gray.max() - gray.min()
    scaled = (gray - gray.min()) / (span if span > 0 else 1.0)
    labels = slic(scaled, n_segments=segments, compactness=0.1, channel_axis=None, start_label=0)
    if len(np.unique(labels)) < segments // 4:
        # Low compactness follows intensity edges, which suits faces; on texture without edges
        # (noise, a flat crop) it collapses, and a more regular grid is the honest fallback.
        labels = slic(scaled, n_segments=segments, compactness=1.0, channel_axis=None, start_label=0)
    return labels


@register_method("lime", "LIME", display="signed", gradients=False)
def lime(model: nn.Module, images: torch.Tensor, target=None, num_samples: int = 1000, segments: int = 50,
         seed: int = 0, batch_size: int = 250, fill: float | None = 0.0) -> torch.Tensor:
    """``fill``: what a switched-off superpixel becomes, in model-input units (0.0 is the
    training-mean gray under ``standardize``; ``LoadedModel.explain`` passes the model's own); None
    uses LIME's default, the superpixel's own mean, which leaves a model that averages regions unmoved."""
    check_whole("lime", "num_samples", num_samples, 2, MAX_SAMPLES)  # LIME's first sample is the face itself
    check_whole("lime", "segments", segments, 1, 48 * 48)
    check_whole("lime", "batch_size", batch_size, 1)
    check_whole("lime", "seed", seed, 0, 2**32 - 1)  # NumPy's RandomState takes no more
    if fill is not None:
        check_finite("lime", "fill", fill)
    from lime import lime_image  # here, not at import (scikit-learn: a second): see ferlab.explain

    device = model_device(model)
    with evaluation_mode(model):
        targets = resolve_targets(model, images, target)

        def classify(batch: np.ndarray) -> np.ndarray:  # (n, 48, 48, 3) float64 -> (n, 7) probabilities
            x = torch.from_numpy(batch[..., 0]).float().unsqueeze(1).to(device)
            with torch.no_grad(), autocast_for(device, True):  # forward passes only: bf16 where native
                return model(x).float().softmax(1).cpu().double().numpy()

        maps = []
        for image, label in zip(images.detach().cpu(), targets.tolist()):
            rgb = image[0].double().numpy()[..., None].repeat(3, axis=2)
            explainer = lime_image.LimeImageExplainer(random_state=seed)
            with contextlib.redirect_stderr(io.StringIO()):  # lime 0.2 always draws its own progress bar
                explanation = explainer.explain_instance(
                    rgb, classify, labels=(label,), top_labels=None, hide_color=fill, num_samples=num_samples,
                    batch_size=batch_size, segmentation_fn=lambda im: superpixels(im, segments), random_seed=seed)
            segments_map = explanation.segments  # (48, 48) superpixel index per pixel
            weight_of = np.zeros(segments_map.max() + 1)
            for segment, weight in explanation.local_exp[label]:
                weight_of[segment] = weight
            maps.append(weight_of[segments_map])
    return torch.tensor(np.stack(maps), dtype=torch.float32).unsqueeze(1)
