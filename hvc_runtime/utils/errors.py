"""The exception types users see: a one-line message naming the file (or option) and the problem.

Messages name options as the Python API does (`overwrite=True`, `device 'cuda'`); a command line
reports them under its own flags (`--overwrite`, `--device cuda`) through `describe(flag)`, so
library text never names a flag that an API user does not have.
"""

from __future__ import annotations

from collections.abc import Callable

FlagNamer = Callable[[str], str]  # API option name → the command line's flag


class HvcError(Exception):
    """A user-facing error; the CLI prints it on one line and exits non-zero.

    `remedy` names a boolean option that would accept what was refused (e.g. "overwrite")."""

    def __init__(self, message: str, *, remedy: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy

    def describe(self, flag: FlagNamer | None = None) -> str:
        if self.remedy is None:
            return self.message
        how = f"pass {flag(self.remedy)}" if flag else f"set {self.remedy}=True"
        return f"{self.message}; {how} to go ahead"

    def __str__(self) -> str:
        return self.describe()


class OptionError(HvcError, ValueError):
    """A bad setting, named as the Python API names it (`device 'cuda': ...`). A `ValueError`
    too: it is one."""

    def __init__(self, option: str, value: object, problem: str) -> None:
        super().__init__(problem)
        self.option = option
        self.value = value

    def describe(self, flag: FlagNamer | None = None) -> str:
        if flag is None:
            return f"{self.option} {self.value!r}: {self.message}"
        return f"{flag(self.option)} {self.value}: {self.message}"


class HvcWarning(UserWarning):
    """Something the user must know although the work goes on (an object too small to track,
    frames taken in numeric order); the commands print it as one `warning:` line."""
