"""HTTP downloads of weights files: mirrors in order, redirects followed, a timeout on every
connect and read (a dead network fails in seconds), the body's size checked against
`Content-Length`, the free space checked first, and a progress bar on stderr.

Only the standard library's urllib. It writes to a temporary path chosen by `hub`, which
renames the file into place once it has passed its checks.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from hvc_runtime.utils.errors import HvcError

TIMEOUT_VARIABLE = "HVC_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT_S = 20.0
_BLOCK = 1 << 20
console = Console(stderr=True, soft_wrap=True)  # downloads report on stderr, as commands do


class MirrorFailed(Exception):
    """One URL did not deliver the file (the next mirror may)."""


class DownloadFailed(HvcError):
    """No URL delivered the file; `failures` says why, URL by URL."""

    def __init__(self, failures: list[str]) -> None:
        super().__init__("; ".join(failures))
        self.failures = failures


def timeout_seconds() -> float:
    """Seconds a connect or a read may wait (HVC_DOWNLOAD_TIMEOUT, default 20)."""
    text = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise HvcError(f"{TIMEOUT_VARIABLE} {text!r}: must be a positive number of seconds")
    return value


def download(urls: Sequence[str], dest: Path, label: str) -> None:
    """Write the file at the first of `urls` that delivers it whole into `dest`.

    Raises `DownloadFailed` naming every URL and why it failed; a full disk or an unwritable
    folder is not a mirror's fault and is raised at once."""
    timeout = timeout_seconds()
    failures = []
    for url in urls:
        try:
            _fetch(url, dest, label, timeout)
            return
        except MirrorFailed as failure:
            failures.append(f"{url}: {failure}")
    raise DownloadFailed(failures)


def require_space(folder: Path, needed: int, what: str) -> None:
    """Refuse to start writing `needed` bytes into `folder` when they do not fit."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise HvcError(
            f"{folder}: {what} needs {_megabytes(needed)}, only {_megabytes(free)} are free there"
        )


def _fetch(url: str, dest: Path, label: str, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": f"hvc/{_version()}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = _content_length(response)
            if length is not None:
                require_space(dest.parent, length, label)
            received = _copy(response, dest, label, length, timeout)
    except urllib.error.HTTPError as error:
        raise MirrorFailed(f"HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise MirrorFailed(_network_problem(error.reason, timeout)) from None
    except (OSError, http.client.HTTPException) as error:  # before the body: refused, reset
        raise MirrorFailed(_network_problem(error, timeout)) from None
    if length is not None and received != length:
        raise MirrorFailed(f"the connection closed after {received} of {length} bytes")


def _copy(response: IO[bytes], dest: Path, label: str, length: int | None, timeout: float) -> int:
    """Stream the body into `dest` under a progress bar; the number of bytes received."""
    received = 0
    with open(dest, "wb") as out, _progress(label, length) as advance:
        for block in _blocks(response, timeout):
            try:
                out.write(block)
            except OSError as error:
                raise HvcError(f"{dest.parent}: cannot write {label} ({error.strerror})") from None
            received += len(block)
            advance(received)
    return received


def _blocks(response: IO[bytes], timeout: float) -> Iterator[bytes]:
    """The body in blocks; a stalled or broken connection is the mirror's failure."""
    while True:
        try:
            block = response.read(_BLOCK)
        except http.client.IncompleteRead as error:
            raise MirrorFailed(f"the connection closed early ({error})") from None
        except (OSError, http.client.HTTPException) as error:
            raise MirrorFailed(_network_problem(error, timeout)) from None
        if not block:
            return
        yield block


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value is not None and value.strip().isdigit() else None


def _network_problem(reason: object, timeout: float) -> str:
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host ({reason.strerror})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


@contextmanager
def _progress(label: str, total: int | None) -> Iterator:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"downloading {label}", total=total)
        yield lambda done: bar.update(task, completed=done)


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def _version() -> str:
    try:
        return metadata.version("hvc")
    except metadata.PackageNotFoundError:
        return "unknown"
