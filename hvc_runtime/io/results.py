"""An `hvc-run` output folder, committed whole: all of a result appears, or none of it.

The result (masks/, overlay.mp4, summary.json) is written into a hidden staging folder inside
the output folder and moved into place only when complete. A folder is only ever replaced when
it provably holds this tool's own earlier result (its summary.json says so and lists what it
wrote), and then only what that result wrote; anything else in it is the user's and stays,
unless `overwrite`, which still never replaces an input of the run.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from hvc_runtime.atomic import atomic_path
from hvc_runtime.errors import HvcError

TOOL = "hvc-run"
SUMMARY = "summary.json"
STAGING = ".hvc-run.partial"
RETIRED = ".hvc-run.replaced"


def earlier_outputs(folder: Path) -> set[str] | None:
    """What an earlier hvc-run result in `folder` wrote, from its summary; None if none is
    provably there (no summary, or one this tool did not write)."""
    try:
        summary = json.loads((folder / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    outputs = summary.get("outputs") if isinstance(summary, dict) else None
    if summary.get("tool") != TOOL or not isinstance(outputs, list):
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
        if self.out.exists() and not self.out.is_dir():
            raise HvcError(f"{self.out}: output path exists and is not a folder")
        present = (
            {p.name for p in self.out.iterdir()} - {STAGING, RETIRED}
            if self.out.is_dir()
            else set()
        )
        earlier = earlier_outputs(self.out) or set()
        others = sorted(present - earlier)
        if others and not overwrite:
            raise HvcError(
                f"{self.out}: output folder holds files that are not an earlier hvc-run result "
                f"({', '.join(others[:3])}{', ...' if len(others) > 3 else ''})",
                remedy="overwrite",
            )
        replaced = (earlier & present) | (set(self.outputs) & present)
        for path in inputs:
            for name in replaced:
                if _inside(path, self.out / name):
                    raise HvcError(
                        f"{self.out / name}: holds an input of this run ({path}); writing the "
                        "result there would destroy it, choose another output folder"
                    )
        self.replaced = replaced
        self.created = False
        self.staging = self.out / STAGING

    def open(self) -> Path:
        """Create the folder (if needed) and an empty staging folder; returns the staging folder."""
        try:
            self.created = not self.out.exists()
            self.out.mkdir(parents=True, exist_ok=True)
            for stale in (self.staging, self.out / RETIRED):  # left by a killed earlier run
                shutil.rmtree(stale, ignore_errors=True)
            self.staging.mkdir()
        except OSError as exc:
            raise HvcError(f"{self.out}: cannot create the output folder ({exc.strerror})") from exc
        if not os.access(self.out, os.W_OK):
            raise HvcError(f"{self.out}: output folder is not writable")
        return self.staging

    def commit(self, summary: dict) -> None:
        """Write the summary (it lists the outputs) and swap the staged result in."""
        written = [
            name for name in self.outputs if (self.staging / name).exists() or name == SUMMARY
        ]
        payload = {"tool": TOOL, "outputs": [n for n in written if n != SUMMARY], **summary}
        with atomic_path(self.staging / SUMMARY) as tmp:
            tmp.write_text(json.dumps(payload, indent=2) + "\n")
        retired = self.out / RETIRED
        retired.mkdir()
        for name in sorted(self.replaced):
            (self.out / name).rename(retired / name)
        for name in written:
            (self.staging / name).rename(self.out / name)
        shutil.rmtree(retired)
        self.staging.rmdir()

    def abort(self) -> None:
        """Remove what this run staged, and the folder itself if this run created it empty."""
        shutil.rmtree(self.staging, ignore_errors=True)
        if self.created and self.out.is_dir() and not any(self.out.iterdir()):
            self.out.rmdir()
