"""Exceptions for problems a user can fix. The CLI prints them as one line and exits with code 2."""

import os
import re
import reprlib

_BRIEF = reprlib.Repr()  # keyword arguments need Python 3.12
_BRIEF.maxlevel, _BRIEF.maxlist, _BRIEF.maxdict, _BRIEF.maxstring, _BRIEF.maxother = 2, 4, 4, 60, 60


class FerlabError(Exception):
    """A user-facing error: bad input, a missing file, an unknown name."""


class DataError(FerlabError, ValueError):
    """Unreadable or malformed data; the message names the file and the line or entry."""

    def __init__(self, source: str, where: str | int | None, problem: str):
        self.source, self.where, self.problem = source, where, problem
        location = source if where is None else f"{source}:{where}"
        super().__init__(f"{location}: {problem}")


class NotApplicable(FerlabError, ValueError):
    """An explanation method that cannot explain this model (faithfully): Grad-CAM on a model
    without convolutions, guided backpropagation without nn.ReLU. The report skips the method
    with a note; ``ferlab explain`` says so in one line."""


class UnknownChoice(FerlabError, ValueError):
    """A name that is not among the valid ones (a method, a layer); the message lists them."""


def brief(value) -> str:
    """``repr(value)`` cut short for a one-line message: a value from a user's file may be a long
    list, or a YAML alias bomb whose full repr would not fit in memory."""
    return _BRIEF.repr(value)


URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")  # a scheme and "//": https://, http://, s3://, file://


def check_local(value, what: str = "", output: bool = False) -> None:
    """A FerlabError where a file name given as text is a URL and no such local file exists:
    pathlib read "https://host/a.jpg" as the path "https:/host/a.jpg" ("No such file or directory";
    as an output, a folder "https:" was made). ferlab works offline: it reads and writes local files."""
    if isinstance(value, str) and URL.match(value) and not os.path.exists(value):
        remedy = "give a local path" if output else "save the file and give its path"
        raise FerlabError(f"{what + ' ' if what else ''}{value}: a URL; ferlab reads and writes local files and "
                          f"downloads nothing (it works offline): {remedy}")
