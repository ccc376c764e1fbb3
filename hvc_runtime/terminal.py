"""What the command lines share: a stderr console and the one-line error rule.

Every user-facing failure is an `HvcError`; inside `user_errors()` it is printed as one
`error: <file>: <problem>` line and the command exits with status 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from hvc_runtime.errors import HvcError

console = Console(stderr=True, soft_wrap=True)  # progress and messages; may be made quiet
_errors = Console(stderr=True, soft_wrap=True)  # never quiet: every process reports its error


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except HvcError as error:
        _errors.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
        raise typer.Exit(1) from None
