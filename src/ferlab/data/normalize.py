"""Input normalisation: uint8 faces -> the float tensors a model sees.

The statistics are measured on the training split once and stored in the checkpoint, so that
evaluation and prediction feed the model exactly what it was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# kind -> (x in 0..255, mean, std) -> what the model sees.
NORMALIZERS = {
    "none": lambda x, mean, std: x,                            # raw 0..255
    "rescale": lambda x, mean, std: x / 255.0,                 # [0, 1]
    "standardize": lambda x, mean, std: (x / 255.0 - mean) / std,  # training mean 0, std 1
}
KINDS = tuple(NORMALIZERS)
# FER2013 Training's mean pixel (Normalization.fit on its 28,709 faces: 0.513565 of 255), for models
# that do not record their own (``none``, ``rescale``, ONNX graphs written before they did).
FER2013_MEAN_GRAY = 130.959


@dataclass(frozen=True)
class Normalization:
    kind: str = "standardize"  # none: raw 0..255 | rescale: [0, 1] | standardize: (x/255 - mean) / std
    mean: float = 0.0          # of training pixels in [0, 1] (standardize only)
    std: float = 1.0

    @classmethod
    def fit(cls, kind: str, train_images: "torch.Tensor") -> Normalization:
        """Measure mean/std of (N, 48, 48) uint8 training faces for ``standardize``."""
        if kind not in KINDS:
            raise ValueError(f"unknown normalization {kind!r}; expected one of {', '.join(KINDS)}")
        if kind != "standardize":
            return cls(kind)
        import torch

        # From the 256-bin histogram: exact, and no float copy of the whole data set in memory.
        counts = torch.bincount(train_images.flatten(), minlength=256).double()
        levels = torch.arange(256, dtype=torch.float64) / 255.0
        mean = float((counts * levels).sum() / counts.sum())
        variance = float((counts * (levels - mean) ** 2).sum() / (counts.sum() - 1))
        # At least one gray level: faces that are all one value would otherwise divide by zero.
        return cls(kind, mean, max(variance ** 0.5, 1 / 255))

    def apply(self, images: "torch.Tensor") -> "torch.Tensor":
        """(N, 48, 48) or (N, 1, 48, 48) uint8 or float in 0..255 -> (N, 1, 48, 48) float32."""
        x = images.float()
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return NORMALIZERS[self.kind](x, self.mean, self.std)

    def to_dict(self) -> dict:
        return asdict(self)
