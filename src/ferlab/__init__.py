"""ferlab: train, evaluate and explain facial-expression classifiers on FER2013.

Importing ferlab has no side effects; the command line lives in ``ferlab.cli``.
"""

from ferlab.labels import EMOTIONS

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "__version__"]
