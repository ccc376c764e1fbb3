"""An exclusive claim on an output folder, so two processes never write one result at once.

The claim is a kernel `flock` on a hidden lock file in the folder, which holds the owner's
process id so that a refused second run can name it. The kernel drops the lock when its holder
dies (even by kill -9), so a crashed run never blocks the next one; the file it leaves is
taken over.
"""

from __future__ import annotations

import fcntl
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import IO

from hvc_runtime.utils.errors import HvcError


class FolderLock:
    """Hold `folder/name` locked until `release()` (or until this object or the process ends).

    Raises `HvcError` at once, naming `target` (what the lock guards: default the folder) and
    the holder's process id, when another process holds it; `what` names the holder's tool.
    With `on_wait`, a held lock is waited for instead, after `on_wait` is told who holds it."""

    def __init__(
        self,
        folder: Path,
        name: str,
        what: str,
        target: Path | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(folder) / name
        self._handle = _acquire(self.path, target or folder, what, on_wait)
        self._finalizer = weakref.finalize(self, _release, self._handle, self.path)

    def release(self) -> None:
        """Remove the lock file, then unlock (a waiting process re-checks the file it locked)."""
        self._finalizer()


def _acquire(path: Path, target: Path, what: str, on_wait: Callable[[str], None] | None) -> IO[str]:
    while True:
        try:
            handle = open(path, "a+")  # noqa: SIM115 - held open for as long as the lock
        except OSError as exc:
            raise HvcError(f"{target}: cannot lock {path.name} ({exc.strerror})") from exc
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip()
                process = f" (process {holder})" if holder.isdigit() else ""
                if on_wait is None:
                    handle.close()
                    raise HvcError(
                        f"{target}: another {what}{process} is writing it; wait for it to "
                        "finish or choose another output path"
                    ) from None
                on_wait(f"another {what}{process}")
                fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:  # NFS without a lock daemon, some FUSE and SMB mounts
            handle.close()
            raise HvcError(
                f"{target}: its file system cannot lock {path.name} ({exc.strerror}); write the "
                "result to a local folder"
            ) from exc
        if _same_file(handle, path):  # not a file its last holder removed while we opened it
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            return handle
        handle.close()


def _same_file(handle: IO[str], path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def _release(handle: IO[str], path: Path) -> None:
    path.unlink(missing_ok=True)
    handle.close()
