"""Stop signals in data-loader workers: only the trainer that owns a worker may stop it.

A scheduler's SIGTERM (Slurm, `kill -- -PGID`, `pkill`) or a terminal's SIGINT reaches the
workers as well as the trainer. A worker that died of it would crash the trainer mid-step
instead of letting it stop at a step boundary with a checkpoint, so workers ignore stop
signals from anyone else. The trainer's own SIGTERM, which is how PyTorch and
multiprocessing shut workers down, still ends a worker at once (ignoring it too would leave
the trainer waiting forever for a worker that will not exit).

The signals stay blocked in a worker's threads, and so in any process a worker would start
(none does today): such a process must unblock them itself."""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def stop_signals_only_from(trainer_pid: int) -> Callable[[int], None]:
    """A `worker_init_fn` for a DataLoader built in the process `trainer_pid`."""
    return functools.partial(_route_stop_signals, trainer_pid)


def start_workers(loader: Iterable[Any]) -> Iterator[Any]:
    """`iter(loader)`, with the stop signals held back in the trainer while its workers start:
    one arriving between a worker's fork and its `worker_init_fn` would otherwise run the
    trainer's handlers, copied into the worker. The trainer receives a held signal as soon as
    the workers are up."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _route_stop_signals(trainer_pid: int, _worker_id: int) -> None:
    # Blocked in the worker's main thread (and so in every thread it starts later), the stop
    # signals are taken by one thread that sees who sent them. Without that thread they would
    # stay blocked for the trainer's SIGTERM too (they may arrive blocked from the trainer, see
    # `start_workers`), so a failed start unblocks them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        threading.Thread(
            target=_exit_on_the_trainers_sigterm,
            args=(trainer_pid,),
            name="stop-signals",
            daemon=True,
        ).start()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        raise


def _exit_on_the_trainers_sigterm(trainer_pid: int) -> None:
    while True:
        received = signal.sigwaitinfo(STOP_SIGNALS)
        if received.si_signo == signal.SIGTERM and received.si_pid == trainer_pid:
            os._exit(0)  # as PyTorch's own worker handler does for its parent's SIGTERM
