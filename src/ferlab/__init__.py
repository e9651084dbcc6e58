"""ferlab: train, evaluate and explain facial-expression classifiers on FER2013.

    import ferlab
    model = ferlab.load("default")          # or a run folder or a checkpoint file
    model.predict("face.jpg").labels        # ['happy']; also PIL images, arrays, tensors, lists

Importing ferlab has no side effects and is light: the API (``ferlab.api``) and PyTorch are
imported on first use of ``load`` and friends. The command line lives in ``ferlab.cli``.
"""

from ferlab.errors import FerlabError  # what every bad input raises: one line naming it
from ferlab.labels import EMOTIONS

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "FerlabError", "__version__", "load", "Model", "Predictions", "as_faces", "demo_photos"]

_LAZY = {"load": "ferlab.api", "Model": "ferlab.api", "Predictions": "ferlab.api", "as_faces": "ferlab.api",
         "demo_photos": "ferlab.photos"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ferlab' has no attribute {name!r}")
