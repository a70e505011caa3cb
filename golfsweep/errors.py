"""The one exception type that the CLI turns into a one-line message and exit code 1."""

from __future__ import annotations

from collections.abc import Iterable


class GolfsweepError(Exception):
    """A user-facing problem: bad input, a sweep directory that does not match, an unreachable cluster.

    The message is shown to the user as is, so it names the key, the rule and the value.
    """


class SpecError(GolfsweepError):
    """Every problem found while validating a sweep file, collected and raised once."""

    def __init__(self, problems: Iterable[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        if len(self.problems) == 1:
            message = f"{where}{self.problems[0]}"
        else:
            message = f"{where}{len(self.problems)} problems: " + "; ".join(self.problems)
        super().__init__(message)
