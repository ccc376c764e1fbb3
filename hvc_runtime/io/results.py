"""An `hvc-run` output folder, committed whole: all of a result appears, or none of it.

The result (masks/, overlay.mp4, summary.json) is written into a hidden staging folder inside
the output folder and moved into place only when complete. A folder is only ever replaced when
it provably holds this tool's own earlier result (its summary.json says so and lists what it
wrote), and then only what that result wrote; anything else in it is the user's and stays,
unless `overwrite`, which still never replaces an input of the run. One run at a time writes
into a folder: a second is refused at once (`FolderLock`), so two never share a staging folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from hvc_runtime.utils.atomic import atomic_path
from hvc_runtime.utils.errors import HvcError, listing
from hvc_runtime.utils.interrupts import deferred
from hvc_runtime.utils.locks import FolderLock

TOOL = "hvc-run"
SUMMARY = "summary.json"
STAGING = ".hvc-run.partial"
RETIRED = ".hvc-run.replaced"
LOCK = ".hvc-run.lock"  # held by the run writing into the folder (see FolderLock)
# summaries written before they named their tool and outputs held exactly these keys
_FIRST_SUMMARY_KEYS = {"video", "mask", "frames", "masks", "overlay", "propagation"}


def earlier_outputs(folder: Path) -> set[str] | None:
    """What an earlier hvc-run result in `folder` wrote, from its summary; None if none is
    provably there (no summary, or one this tool did not write)."""
    try:
        summary = json.loads((folder / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):
        return None
    if "tool" not in summary and summary.keys() >= _FIRST_SUMMARY_KEYS:
        outputs = ["masks", "overlay.mp4"]  # the first summaries did not list them
    elif summary.get("tool") == TOOL and isinstance(summary.get("outputs"), list):
        outputs = summary["outputs"]
    else:
        return None
    return {name for name in outputs if isinstance(name, str) and "/" not in name} | {SUMMARY}


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


class ResultFolder:
    """Plan, stage and commit one result into `out` (see the module doc)."""

    def __init__(
        self, out: Path, outputs: Iterable[str], *, overwrite: bool, inputs: Iterable[Path] = ()
    ) -> None:
        self.out = Path(out)
        self.outputs = [*outputs, SUMMARY]
        self.overwrite = overwrite
        self.inputs = list(inputs)
        self.lock: FolderLock | None = None
        if self.out.exists() and not self.out.is_dir():
            raise HvcError(f"{self.out}: output path exists and is not a folder")
        if self.out.is_dir():
            self.lock = FolderLock(self.out, LOCK, TOOL)  # held until commit or abort
        try:
            self.replaced = self._plan()
        except HvcError:
            self._unlock()
            raise
        self.created = False
        self.staging = self.out / STAGING

    def _plan(self) -> set[str]:
        """Check what the folder holds; the names the commit replaces. Runs under the lock when
        the folder exists (again in `open` if it did not exist before)."""
        if self.out.is_dir():
            _recover(self.out)  # an earlier result a killed run left moved aside
        present = (
            {p.name for p in self.out.iterdir()} - {STAGING, RETIRED, LOCK}
            if self.out.is_dir()
            else set()
        )
        earlier = earlier_outputs(self.out) or set()
        others = sorted(present - earlier)
        if others and not self.overwrite:
            raise HvcError(
                f"{self.out}: output folder holds files that are not an earlier hvc-run result "
                f"({listing(others)})",
                remedy="overwrite",
            )
        replaced = (earlier & present) | (set(self.outputs) & present)
        for path in self.inputs:
            for name in replaced:
                if _inside(path, self.out / name):
                    raise HvcError(
                        f"{self.out / name}: holds an input of this run ({path}); writing the "
                        "result there would destroy it, choose another output folder"
                    )
        return replaced

    def open(self) -> Path:
        """Create the folder (if needed) and an empty staging folder; returns the staging folder."""
        try:
            self.created = not self.out.exists()
            self.out.mkdir(parents=True, exist_ok=True)
            if self.lock is None:  # the folder is new: another run may have made it meanwhile
                self.lock = FolderLock(self.out, LOCK, TOOL)
                self.replaced = self._plan()
            shutil.rmtree(self.staging, ignore_errors=True)  # left by a killed earlier run
            self.staging.mkdir()
        except OSError as exc:
            raise HvcError(f"{self.out}: cannot create the output folder ({exc.strerror})") from exc
        return self.staging

    def commit(self, summary: dict) -> None:
        """Write the summary (it lists the outputs) and swap the staged result in: signals wait
        until the swap is over, and a failure inside it puts the earlier result back."""
        written = [n for n in self.outputs if (self.staging / n).exists() or n == SUMMARY]
        payload = {"tool": TOOL, "outputs": [n for n in written if n != SUMMARY], **summary}
        with atomic_path(self.staging / SUMMARY) as tmp:
            tmp.write_text(json.dumps(payload, indent=2) + "\n")
        retired = self.out / RETIRED
        with deferred():
            retired.mkdir()
            try:
                for name in sorted(self.replaced):
                    (self.out / name).rename(retired / name)
                for name in written:  # the summary last: it marks a complete result
                    (self.staging / name).rename(self.out / name)
            except OSError as exc:
                _undo(self.out, self.staging, written)
                raise HvcError(f"{self.out}: cannot move the result in ({exc})") from exc
            shutil.rmtree(retired)
            self.staging.rmdir()
            self._unlock()

    def abort(self) -> None:
        """Remove what this run staged, and the folder itself if this run created it empty."""
        if self.lock is None:
            return  # nothing was staged: the folder was another run's, or never made
        shutil.rmtree(self.staging, ignore_errors=True)
        self._unlock()
        if self.created and self.out.is_dir() and not any(self.out.iterdir()):
            self.out.rmdir()

    def _unlock(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def _undo(out: Path, staging: Path, written: list[str]) -> None:
    """Put a half-done swap back: new outputs to staging, the earlier result in place."""
    for name in written:
        if (out / name).exists() and not (staging / name).exists():
            (out / name).rename(staging / name)
    _recover(out)


def _recover(out: Path) -> None:
    """An earlier result moved aside by a swap that never finished (the process was killed)
    goes back where nothing has taken its place."""
    retired = out / RETIRED
    if not retired.is_dir():
        return
    for path in retired.iterdir():
        if not (out / path.name).exists():
            path.rename(out / path.name)
    shutil.rmtree(retired)
