"""Progress bars with their rate and the time left, on stderr, where a person watches them.

On a terminal or in a notebook a bar redraws itself in place; written into a pipe or a log
(``ferlab train 2> train.log``, CI) each redraw would be one more line, so there it is not drawn.
"""

from __future__ import annotations

import sys


def progress_bar(iterable=None, *, show: bool = True, **options):
    """A ``tqdm`` bar over ``iterable`` (or counting to ``total=``), drawn where ``show`` asks for
    it and a person can see it: a terminal, or a Jupyter kernel (whose streams are no terminal)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=drawn_where(show), **options)


def drawn_where(show: bool) -> bool | None:
    """tqdm's ``disable``: True (never), False (always: a notebook) or None (on a terminal only)."""
    if not show:
        return True
    return False if "ipykernel" in sys.modules else None
