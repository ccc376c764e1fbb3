"""The exception types users see: a one-line message naming the file (or option) and the problem.

Messages name options as the Python API does (`overwrite=True`, `device 'cuda'`); a command line
reports them under its own flags (`--overwrite`, `--device cuda`) through `describe(flag)`, so
library text never names a flag that an API user does not have.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

FlagNamer = Callable[[str], str]  # API option name → the command line's flag
EXCERPT_CHARS = 40  # of the user's text an error quotes, at most


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


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`text` as an error quotes it: its first line only, at most `limit` characters (`…`
    where cut), unprintable characters as `?`. An error names the problem and where it is;
    it does not echo the user's file back."""
    lines = str(text).splitlines() or [""]
    shown = "".join(c if c.isprintable() else "?" for c in lines[0][:limit])
    return shown + ("…" if len(lines[0]) > limit or len(lines) > 1 else "")


def listing(names: Sequence[object], shown: int = 3) -> str:
    """The first `shown` of `names`, comma-separated, with `...` when there are more."""
    more = ", ..." if len(names) > shown else ""
    return ", ".join(str(name) for name in names[:shown]) + more
