"""Progress bars are drawn where a person watches (a terminal, a notebook), never into a pipe or a log."""

from __future__ import annotations

import sys
import types

from ferlab.progress import progress_bar


def drawn(show: bool, capsys) -> tuple[bool, str]:
    """Whether a bar over three steps is drawn, and what reached stderr."""
    bar = progress_bar(range(3), show=show, desc="counting")
    shown = not bar.disable  # tqdm sets disable when the bar closes
    list(bar)
    return shown, capsys.readouterr().err


def test_a_bar_is_drawn_on_a_terminal_or_in_a_notebook_and_never_into_a_pipe(monkeypatch, capsys):
    assert drawn(True, capsys) == (False, "")  # capsys: stderr is a pipe
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    shown, err = drawn(True, capsys)
    assert shown and "counting" in err and "3/3" in err
    assert drawn(False, capsys) == (False, "")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))  # a Jupyter kernel: no terminal
    shown, err = drawn(True, capsys)
    assert shown and "counting" in err
