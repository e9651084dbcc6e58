"""One policy for bad entries in every reader: fail with the location, or skip and count."""

from __future__ import annotations

from ferlab.errors import DataError

KEEP_PROBLEMS = 20  # messages kept for the report when bad entries are skipped


class BadRows:
    """Raises a DataError naming the entry, or, with ``skip=True``, counts it and keeps the message."""

    def __init__(self, source: str, skip: bool):
        self.source, self.skip = source, skip
        self.count = 0
        self.problems: list[str] = []

    def report(self, where: str | int, problem: str) -> None:
        error = DataError(self.source, where, problem)
        if not self.skip:
            raise error
        self.count += 1
        if len(self.problems) < KEEP_PROBLEMS:
            self.problems.append(str(error))
