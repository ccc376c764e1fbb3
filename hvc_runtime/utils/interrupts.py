"""SIGINT and SIGTERM as exceptions the commands can clean up after.

A terminal's Ctrl-C and a scheduler's SIGTERM must both end a command with its outputs either
complete or absent, and one line saying what happened. `interrupts_raise()` turns both signals
into `Interrupted` at once (nothing worth keeping is half done); `graceful_stop()` only records
the first one, so a loop can stop at a safe point (training writes a final checkpoint), and a
second signal raises.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM; `detail` says what was (not) written, for the one-line report."""

    def __init__(self, signum: int = signal.SIGINT, detail: str = "") -> None:
        super().__init__(signum, detail)
        self.signum = signum
        self.detail = detail

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell convention for a death by signal: 128 + its number (130, 143)."""
        return 128 + self.signum

    def with_detail(self, detail: str) -> Interrupted:
        return Interrupted(self.signum, detail)


@contextmanager
def _handlers(handler) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are delivered to the main thread only; nothing to install here
        return
    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """Inside the block, SIGINT and SIGTERM raise `Interrupted` in the main thread."""
    with _handlers(_raise):
        yield


class StopRequest:
    """Set by the first SIGINT/SIGTERM inside `graceful_stop()`; the loop checks `signum`."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            _raise(signum, frame)  # a second signal: stop now, without the safe point
        self.signum = signum


@contextmanager
def graceful_stop() -> Iterator[StopRequest]:
    """Record the first SIGINT/SIGTERM instead of raising; a second one raises `Interrupted`."""
    request = StopRequest()
    with _handlers(request._handle):
        yield request


@contextmanager
def deferred() -> Iterator[None]:
    """A critical section (a few renames that must all happen or none): SIGINT and SIGTERM
    arriving inside are held and raised as `Interrupted` once it is over."""
    held: list[int] = []
    with _handlers(lambda signum, _frame: held.append(signum)):
        yield
    if held:
        raise Interrupted(held[0])
