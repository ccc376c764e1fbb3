"""A job list: a CSV of `video,mask,name` rows, checked whole before anything runs.

Paths are relative to the CSV's folder (so a list travels with its videos); each name becomes
the job's result folder, so names must be unique (also ignoring case, as macOS and Windows
file systems do) and plain folder names.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

from hvc_runtime.utils.errors import HvcError, excerpt

COLUMNS = ("video", "mask", "name")
REPORT = "jobs.json"  # the table of every job, beside the result folders
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


@dataclass(frozen=True)
class Job:
    """One video to segment from its mask (file or folder) into `<out>/<name>/`."""

    name: str
    video: Path
    mask: Path


def read_job_list(path: Path) -> list[Job]:
    """The jobs of the CSV at `path`, or one error naming the file, line and problem (quoting
    at most a short excerpt of the line)."""
    path = Path(path)
    numbered = _numbered_rows(path)
    if not numbered or tuple(numbered[0][1]) != COLUMNS:
        found = excerpt(",".join(numbered[0][1])) if numbered else "an empty file"
        raise HvcError(f"{path}: the first line must be the header {','.join(COLUMNS)} ({found})")
    base = path.resolve().parent
    jobs: list[Job] = []
    seen: dict[str, int] = {}
    for line, row in numbered[1:]:
        where = f"{path}:{line}"
        if len(row) != len(COLUMNS) or not all(row):
            raise HvcError(
                f"{where}: a job needs a video, a mask and a name ({excerpt(','.join(row))})"
            )
        video, mask, name = row
        if not SAFE_NAME.fullmatch(name) or name == REPORT:
            raise HvcError(
                f"{where}: job name '{excerpt(name)}' is not a safe folder name (letters, digits, "
                f". _ + -, not starting with . or -, at most 128 characters, not {REPORT})"
            )
        if name.casefold() in seen:
            raise HvcError(
                f"{where}: job name '{name}' is taken by line {seen[name.casefold()]} (each job "
                "writes the folder of its name)"
            )
        seen[name.casefold()] = line
        jobs.append(Job(name, _under(base, video), _under(base, mask)))
    if not jobs:
        raise HvcError(f"{path}: the job list holds no job (one video,mask,name row a job)")
    return jobs


def _numbered_rows(path: Path) -> list[tuple[int, list[str]]]:
    """The CSV's non-empty rows, each with the line of the file it starts on (a quoted field
    may span lines: a row is numbered as an editor shows it). A field running over a line
    end is an unclosed quote, refused at the line it opens."""
    numbered = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            line = 1
            try:
                for row in reader:
                    if any(row):
                        numbered.append((line, [c.strip() for c in row]))
                        if reader.line_num > line:
                            _refuse_open_quote(path, line, reader.line_num, row)
                    line = reader.line_num + 1
            except csv.Error as exc:  # a NUL byte; a quote left open over a long file
                raise HvcError(f"{path}:{line}: not a readable CSV row ({exc})") from exc
    except FileNotFoundError as exc:
        raise HvcError(f"{path}: job list not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise HvcError(f"{path}: not a readable CSV job list ({exc})") from exc
    return numbered


def _refuse_open_quote(path: Path, line: int, last: int, row: list[str]) -> None:
    """No path or name holds a line break: a row spanning lines has a quote left open."""
    broken = next(c for c in row if "\n" in c or "\r" in c)
    raise HvcError(
        f"{path}:{line}: a quote opened on this line is not closed on it (the field runs on "
        f"to line {last}: '{excerpt(broken)}'); close or remove the quote"
    )


def _under(base: Path, path: str) -> Path:
    """`path` from the list's folder, `..` folded away so messages name it plainly."""
    return Path(os.path.normpath(base / path))


def share_out(frames: dict[str, int], processes: int) -> list[list[str]]:
    """Job names per process, longest videos first, each to the least loaded process so far
    (longest processing time first): processes finish close together. Deterministic, so every
    process computes the same split."""
    loads = [0] * processes
    shares: list[list[str]] = [[] for _ in range(processes)]
    for name in sorted(frames, key=lambda n: (-frames[n], n)):
        rank = min(range(processes), key=lambda r: (loads[r], r))
        shares[rank].append(name)
        loads[rank] += max(frames[name], 1)
    return shares
