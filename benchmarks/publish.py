"""Regenerate the figures of docs/performance.md from a benchmark run's JSON file.

python -m benchmarks.publish benchmarks/runs/cpu-480p/latency.json [docs/performance.md]

The figures sit between the markers below; the text around them is left as it is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.report import markdown

START, END = "<!-- performance:start -->", "<!-- performance:end -->"
PAGE = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def update(page: Path, results_path: Path) -> None:
    """Replace what lies between the markers of `page` with the tables of `results_path`."""
    text = page.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{page}: no {START} ... {END} markers")
    body = markdown(json.loads(results_path.read_text()))
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    page.write_text(f"{head}{START}\n{body}\n{END}{tail}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    update(Path(sys.argv[2]) if len(sys.argv) > 2 else PAGE, Path(sys.argv[1]))
