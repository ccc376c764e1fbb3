"""What the command lines share: a stderr console, progress bars and the one-line error rule.

Every user-facing failure is an `HvcError`; inside `user_errors()` it is printed as one
`error: <file>: <problem>` line and the command exits with status 1. SIGINT and SIGTERM
(`Interrupted`) print one `interrupted: ...` line and exit with 128 + the signal number.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hvc_runtime.utils.errors import HvcError, HvcWarning
from hvc_runtime.utils.interrupts import Interrupted, interrupts_raise

# `typer.Typer(**HELP_LAYOUT)` for every command line: click's plain --help, up to 100 columns
# wide (typer's rich panels leave a help column of 40 characters at 100 columns).
HELP_LAYOUT = {"rich_markup_mode": None, "context_settings": {"max_content_width": 100}}
console = Console(stderr=True, soft_wrap=True)  # progress and messages; may be made quiet
_errors = Console(stderr=True, soft_wrap=True)  # never quiet: every process reports its error


@contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """The project's warnings as one `warning:` line each, every time; others as Python shows them."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", HvcWarning)
        show = warnings.showwarning

        def show_line(message, category, filename, lineno, file=None, line=None) -> None:
            if not issubclass(category, HvcWarning):
                show(message, category, filename, lineno, file, line)
                return
            console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False)

        warnings.showwarning = show_line
        yield


def flag_name(option: str, flags: Mapping[str, str] | None = None) -> str:
    """The command-line flag of an API option: `short_side` → `--short-side` unless renamed."""
    return (flags or {}).get(option) or "--" + option.replace("_", "-")


def describe(error: HvcError, flags: Mapping[str, str] | None = None) -> str:
    """The error's message naming options by this command's flags."""
    return error.describe(lambda option: flag_name(option, flags))


def print_error(text: str) -> None:
    """One `error:` line, on every process (a job list's failed job, or the command's end)."""
    _errors.print(f"[bold red]error:[/] {escape(text)}", highlight=False)


@contextmanager
def user_errors(flags: Mapping[str, str] | None = None) -> Iterator[None]:
    """Run a command body: HvcError → exit 1, SIGINT/SIGTERM → exit 130/143, one line each.

    `flags` maps API option names to this command's flags where they differ, so errors name
    the flag the user typed (see `HvcError.describe`)."""
    try:
        with interrupts_raise(), _warnings_as_lines():
            yield
    except HvcError as error:
        print_error(describe(error, flags))
        raise typer.Exit(1) from None
    except KeyboardInterrupt as stop:
        stop = stop if isinstance(stop, Interrupted) else Interrupted()
        detail = stop.detail or "stopped"
        _errors.print(
            f"[bold yellow]interrupted[/] ({stop.signal_name}): {escape(detail)}", highlight=False
        )
        raise typer.Exit(stop.exit_code) from None


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A bar of `total` steps (unknown if None); yields the callback that sets how many are done."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total or None)
        yield lambda done: progress.update(task, completed=done)


@contextmanager
def job_progress(jobs: int, frames: int | None) -> Iterator[Callable[[int, int, int | None], None]]:
    """One bar over a job list (all processes): yields the callback taking (jobs finished,
    frames segmented, frames in all); shows both against their totals, and frames per
    second. The frames total is shown only once it is known (None: a video's length is
    known only once it has been decoded), and follows jobs that end short of their count."""
    columns = (
        TextColumn("jobs {task.fields[jobs]}/" + str(jobs)),
        BarColumn(),
        TextColumn("frames"),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]:.1f} frames/s"),
        TimeRemainingColumn(),
    )
    start = time.perf_counter()
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("jobs", total=frames, jobs=0, fps=0.0)

        def update(jobs_done: int, frames_done: int, total: int | None) -> None:
            fps = frames_done / max(time.perf_counter() - start, 1e-9)
            progress.update(task, completed=frames_done, jobs=jobs_done, fps=fps, total=total)

        yield update
