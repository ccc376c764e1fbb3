"""The folder downloaded weights are kept in, and the SHA-256 record beside each file.

A file counts as cached only with its record (`<file>.sha256`, in `sha256sum` format), written
last, after the file passed its checks; every later use re-hashes the file and compares. Files
arrive by rename (`hvc_runtime.utils.atomic`), so no reader sees one half-written; everything
that writes here holds the folder's lock (`lock_folder`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from hvc_runtime.utils.atomic import atomic_path
from hvc_runtime.utils.cache import HOME_VARIABLE, hvc_home
from hvc_runtime.utils.errors import HvcError
from hvc_runtime.utils.locks import FolderLock

RECORD_SUFFIX = ".sha256"
_LOCK = ".lock"
_BLOCK = 1 << 20


def weights_folder() -> Path:
    """`$HVC_HOME/weights`, else `$XDG_CACHE_HOME/hvc/weights`, else `~/.cache/hvc/weights`."""
    return hvc_home() / "weights"


def file_digests(path: Path, *algorithms: str) -> dict[str, str]:
    """Hex digests of a file, SHA-256 and any `algorithms`, in one pass."""
    hashes = {"sha256": hashlib.sha256(), **{a: hashlib.new(a) for a in algorithms}}
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            for digest in hashes.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in hashes.items()}


def record_path(path: Path) -> Path:
    return path.with_name(path.name + RECORD_SUFFIX)


def recorded_sha256(path: Path) -> str | None:
    """The SHA-256 recorded for `path`, or None when there is no (readable) record."""
    try:
        fields = record_path(path).read_text().split()
    except OSError:
        return None
    return fields[0].lower() if fields else None


def write_record(path: Path, sha256: str) -> None:
    with atomic_path(record_path(path)) as tmp:
        tmp.write_text(f"{sha256}  {path.name}\n")


def forget(path: Path) -> None:
    """Remove a file and its record (a file that failed a check, or changed since)."""
    record_path(path).unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def lock_folder(folder: Path, on_wait: Callable[[str], None]) -> FolderLock:
    """The cache folder's lock, waited for while another process fetches (it may be fetching
    what this one needs); then leftovers of a fetch that was killed are removed."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK)
        why = "permission denied"
    except OSError as exc:
        writable, why = False, exc.strerror
    if not writable:
        raise HvcError(
            f"{folder}: cannot write into the weights cache ({why}); point {HOME_VARIABLE} "
            "(or XDG_CACHE_HOME) at a writable folder"
        )
    lock = FolderLock(folder, _LOCK, "hvc weights download", on_wait=on_wait)
    for leftover in folder.glob(".*.partial"):
        leftover.unlink(missing_ok=True)
    return lock
