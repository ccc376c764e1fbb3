"""From what a user gives as weights (a path, a model name, a URL) to a checked local file.

Every entry point that takes weights goes through `fetch_weights`: a local path is returned as
it is; a name or URL is downloaded on first use into the weights cache
(`hvc_runtime.encoder.weights_cache`), checked, recorded, and on every later use re-checked
against that record without touching the network. Processes fetching at once take turns on the
cache's lock, so a file is downloaded once; a file that fails a check is removed.
"""

from __future__ import annotations

import os
import shutil
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hvc_runtime.encoder.download import DownloadFailed, console, download, require_space
from hvc_runtime.encoder.published import (
    Checksum,
    RemoteFile,
    RemoteWeights,
    Role,
    archive_members,
    model_names,
    remote_weights,
)
from hvc_runtime.encoder.weights_cache import (
    file_digests,
    forget,
    lock_folder,
    record_path,
    recorded_sha256,
    weights_folder,
    write_record,
)
from hvc_runtime.utils.atomic import atomic_path
from hvc_runtime.utils.errors import HvcError

OFFLINE_VARIABLE = "HVC_OFFLINE"
ContentCheck = Callable[[Path], object]  # reads the file as the weights it must be; HvcError if not


@dataclass(frozen=True)
class Weights:
    """A weights file ready to load: `name` as the user gave it and, for a downloaded one, the
    SHA-256 it was checked against."""

    path: Path
    name: str
    sha256: str | None = None

    @property
    def label(self) -> str:
        """How descriptions name it: the path, or the name and its SHA-256."""
        return self.name if self.sha256 is None else f"{self.name} (sha256 {self.sha256})"

    def record(self) -> dict[str, str]:
        """What a summary or a manifest keeps of it."""
        found = {"name": self.name, "path": str(self.path.resolve())}
        return found | ({"sha256": self.sha256} if self.sha256 else {})


def fetch_weights(value: str | Path, role: Role, check: ContentCheck) -> Weights:
    """The local file `value` stands for, given as `role`; `check` reads a new file as the
    weights it must be before it counts as cached."""
    remote = remote_weights(value, role)
    if remote is None:
        path = Path(value)
        if not path.exists():
            raise HvcError(
                f"{value}: checkpoint not found (not a file, nor one of the names "
                f"{', '.join(model_names(role))}, nor an http(s):// URL)"
            )
        return Weights(path, str(value))
    folder = weights_folder()
    path = folder / remote.filename
    sha256 = _unchanged(path)
    if sha256 is None:
        with _locked(folder):
            sha256 = _fetch(remote, folder, check)
    return Weights(path, remote.name, sha256)


def offline() -> bool:
    """Whether HVC_OFFLINE forbids the network (1/true/yes/on; 0/false/no/off or unset allow it)."""
    text = os.environ.get(OFFLINE_VARIABLE, "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise HvcError(f"{OFFLINE_VARIABLE} {text!r}: use 1 (no downloads) or 0")


def _unchanged(path: Path) -> str | None:
    """The SHA-256 of a cached file that matches its record; None for anything else (missing,
    unrecorded, changed), which is settled under the lock."""
    recorded = recorded_sha256(path)
    if recorded is None or not path.is_file():
        return None
    return recorded if file_digests(path)["sha256"] == recorded else None


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    def waiting(holder: str) -> None:
        console.print(
            f"waiting for {holder}, which is fetching weights into {folder}",
            highlight=False,
            markup=False,
        )

    lock = lock_folder(folder, waiting)
    try:
        yield
    finally:
        lock.release()


def _fetch(remote: RemoteWeights, folder: Path, check: ContentCheck) -> str:
    """Under the lock: the weights file in place, checked and recorded; its SHA-256."""
    path = folder / remote.filename
    if remote.member is None:
        if not path.exists():
            _download(remote, path)
        return _settle(path, remote.name, remote.download.checksum, check)
    if path.exists():  # extracted before, or put there by hand
        return _settle(path, remote.name, None, check)
    _extract(remote, folder)
    try:
        return _settle(path, remote.name, None, check)
    except HvcError as error:  # the archive it came from is no better: fetch both afresh
        forget(folder / remote.download.filename)
        raise HvcError(f"{error} (and {remote.download.filename}, which held it)") from None


def _settle(path: Path, name: str, checksum: Checksum | None, check: ContentCheck) -> str:
    """Check a file against its record, or, on its first use (downloaded, or put there by
    hand), against the published checksum and as the weights it must be, then record it."""
    recorded = recorded_sha256(path)
    digests = file_digests(path, *([checksum.algorithm] if checksum and not recorded else []))
    sha256 = digests["sha256"]
    if recorded is not None:
        if sha256 != recorded:
            forget(path)
            raise HvcError(
                f"{path}: changed since it was checked (sha256 {sha256}, recorded {recorded}); "
                "removed it, the next use fetches it again"
            )
        return recorded
    if checksum and not checksum.matches(digests[checksum.algorithm]):
        forget(path)
        raise HvcError(
            f"{path}: {checksum.algorithm} {digests[checksum.algorithm]} is not the published "
            f"{checksum.prefix}…; removed it"
        )
    try:
        check(path)
    except HvcError as error:
        forget(path)
        raise HvcError(f"{error}; removed it") from None
    write_record(path, sha256)
    console.print(
        f"{name}: sha256 {sha256} ({path.name}), recorded in {record_path(path)}; every later "
        "use is checked against it",
        highlight=False,
        markup=False,
    )
    return sha256


def _download(remote: RemoteWeights, path: Path) -> None:
    """The download's file into `path`, whole or not at all (atomic rename)."""
    forget(path)  # a record left without its file is of no use to the new one
    urls = remote.download.urls
    if offline():
        raise HvcError(
            f"{remote.name}: not in the weights cache, and {OFFLINE_VARIABLE}=1 forbids "
            f"downloading it from {', '.join(urls)}; {_by_hand(remote, path.parent)}"
        )
    try:
        with atomic_path(path) as tmp:
            download(urls, tmp, path.name)
    except DownloadFailed as failed:
        raise HvcError(
            f"{remote.name}: could not download {path.name} ({failed}); "
            f"{_by_hand(remote, path.parent)}"
        ) from None


def _extract(remote: RemoteWeights, folder: Path) -> None:
    """The member out of the archive (downloaded first if it is not cached), by rename."""
    archive = folder / remote.download.filename
    if not archive.exists():
        _download(remote, archive)
    _settle(archive, remote.name, remote.download.checksum, _archive_check(remote.download))
    path = folder / remote.filename
    forget(path)
    try:
        with zipfile.ZipFile(archive) as bundle:
            found = [
                info
                for info in bundle.infolist()
                if PurePosixPath(info.filename).name == remote.member and not info.is_dir()
            ]
            if not found:
                raise HvcError(
                    f"{remote.name}: {archive} holds no {remote.member} (it holds "
                    f"{_members(bundle)})"
                )
            require_space(folder, found[0].file_size, remote.filename)
            with atomic_path(path) as tmp, bundle.open(found[0]) as source, open(tmp, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:  # changed since its check
        forget(archive)
        raise HvcError(f"{archive}: cannot extract {remote.member} ({error}); removed it") from None
    except OSError as error:
        raise HvcError(f"{folder}: cannot write {remote.filename} ({error.strerror})") from None


def _archive_check(download: RemoteFile) -> ContentCheck:
    """A zip whose every member reads back (CRC) and that holds a model it is published for."""

    def check(path: Path) -> None:
        try:
            with zipfile.ZipFile(path) as bundle:
                broken = bundle.testzip()
                names = {PurePosixPath(n).name for n in bundle.namelist()}
                if broken is not None:
                    raise HvcError(f"{path}: {broken} is corrupt in the zip (CRC mismatch)")
                if not names & set(archive_members(download)):
                    raise HvcError(
                        f"{path}: holds none of {', '.join(archive_members(download))} "
                        f"(it holds {_members(bundle)})"
                    )
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            raise HvcError(f"{path}: not a readable zip archive ({error})") from None

    return check


def _members(bundle: zipfile.ZipFile, limit: int = 8) -> str:
    names = [n for n in bundle.namelist() if not n.endswith("/")]
    shown = ", ".join(names[:limit]) or "nothing"
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _by_hand(remote: RemoteWeights, folder: Path) -> str:
    """Where a file fetched some other way goes, so that the next run finds it."""
    where = f"put {remote.filename} at {folder / remote.filename} by hand"
    if remote.member:
        archive = remote.download.filename
        where += f" (it is in {archive}, which may go at {folder / archive} instead)"
    return where
