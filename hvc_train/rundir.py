"""The run folder: what makes it a run, and what a failed start leaves behind (nothing).

A folder is a run once it holds `checkpoint.pt`. Until then, a failure removes the files this
run created (config.json, the TensorBoard folder, the folder itself if it made it), so a rerun
is not refused; a folder left with only such files by a killed process is reused as well.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hvc_runtime.utils.distributed import DistContext, run_on_main
from hvc_runtime.utils.errors import FlagNamer, HvcError, listing
from hvc_runtime.utils.locks import FolderLock

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
ENCODER = "encoder.safetensors"
TENSORBOARD = "tensorboard"
SNAPSHOTS = "encoders"  # the inference encoder at every checkpoint: step-NNNNNN.safetensors
RUN_FILES = (CHECKPOINT, CONFIG, ENCODER, TENSORBOARD, SNAPSHOTS)
LOCK = ".hvc-train.lock"  # held by the process training into the folder (see FolderLock)


class RunExists(HvcError):
    """The folder holds a checkpoint; continuing or replacing it must be asked for."""

    def __init__(self, folder: Path) -> None:
        super().__init__(f"{folder}: folder already holds a run ({CHECKPOINT})")

    def describe(self, flag: FlagNamer | None = None) -> str:
        if flag is None:
            return f"{self.message}; set resume=True to continue it or force=True to replace it"
        return (
            f"{self.message}; pass {flag('resume')} to continue it or {flag('force')} to replace it"
        )


def require_resumable(folder: Path) -> None:
    """Refuse `resume` where there is nothing to continue, naming the missing checkpoint."""
    if not folder.is_dir():
        raise HvcError(f"{folder}: no run to resume: the folder does not exist")
    if not (folder / CHECKPOINT).is_file():
        raise HvcError(f"{folder}: no run to resume: the folder holds no {CHECKPOINT}")


def _is_run_file(path: Path) -> bool:
    """A file a run writes, or a temporary one an atomic write left behind."""
    return path.name in RUN_FILES or path.name.startswith(tuple(f".{n}." for n in RUN_FILES))


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def check_run_folder(folder: Path, force: bool) -> None:
    """Refuse a folder holding a run (unless `force`) or files that are not a run's."""
    if not folder.is_dir():
        return
    if (folder / CHECKPOINT).is_file() and not force:
        raise RunExists(folder)
    foreign = [p.name for p in folder.iterdir() if not _is_run_file(p) and p.name != LOCK]
    if foreign and not force:
        raise HvcError(
            f"{folder}: folder is not empty and holds no run ({listing(sorted(foreign))}); "
            "choose an empty or new folder",
            remedy="force",
        )


@contextmanager
def run_folder(folder: Path, resume: bool, force: bool, context: DistContext) -> Iterator[None]:
    """Claim `folder` for a run and clean up after a failure that comes before its first
    checkpoint (a resumed run has one: nothing to clean). Only rank 0 touches the folder; it
    holds the folder's lock throughout, so a second run into it is refused at once. Every
    rank learns whether rank 0 could claim it: a refusal stops them all, none waits for it."""
    existed = folder.is_dir()
    if resume and not existed:  # the caller reports a missing run
        yield
        return
    lock = run_on_main(context, lambda: _claim(folder, existed, resume, force))
    if lock is None:  # another rank's: rank 0 holds the folder
        yield
        return
    try:
        yield
    except BaseException:
        if not resume and not (folder / CHECKPOINT).is_file():
            for name in RUN_FILES:
                _remove(folder / name)
            lock.release()
            if not existed and not any(folder.iterdir()):
                folder.rmdir()
        raise
    finally:
        lock.release()


def _claim(folder: Path, existed: bool, resume: bool, force: bool) -> FolderLock:
    """Lock `folder` (made if new) and, for a new run, check it again under the lock and clear
    what an earlier run left; a refusal leaves the folder as it was."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HvcError(f"{folder}: cannot create the run folder ({exc.strerror})") from exc
    lock = FolderLock(folder, LOCK, "hvc-train")
    if existed and not resume:
        try:
            check_run_folder(folder, force)
        except BaseException:
            lock.release()
            raise
        for path in folder.iterdir():
            if _is_run_file(path):
                _remove(path)  # a replaced run, or leftovers of one that never checkpointed
    return lock
