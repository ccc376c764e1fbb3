"""Regenerate the README's performance section from a benchmark JSON file.

python -m benchmarks.readme results/latency.json [README.md]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.report import markdown

START, END = "<!-- performance:start -->", "<!-- performance:end -->"


def update(readme: Path, results_path: Path) -> None:
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme}: no {START} ... {END} markers")
    body = markdown(json.loads(results_path.read_text()))
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{body}\n{END}{tail}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    update(Path(sys.argv[2]) if len(sys.argv) > 2 else Path("README.md"), Path(sys.argv[1]))
