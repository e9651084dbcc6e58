"""Exceptions for problems a user can fix. The CLI prints them as one line and exits with code 2."""


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
