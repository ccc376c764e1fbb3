"""The documentation cannot drift from the project: every relative link of the README and of
docs/ resolves (file and anchor), every `hvc-*` option docs/cli.md names exists in that command
and every option of every command is named there, and the API examples run as written."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image

from hvc_runtime.encoder.checkpoints import CheckpointHeader, random_encoder, save_encoder
from tests.conftest import DAVIS2016, panning_clip

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CLI_PAGE = ROOT / "docs" / "cli.md"
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
SPAN = re.compile(r"`([^`]+)`")
COMMAND = re.compile(r"^hvc[-_](run|eval|train|export)$")  # `-m hvc_train` is hvc-train
OPTION = re.compile(r"^--[a-z0-9][a-z0-9-]*")


def prose(text: str) -> str:
    """The text outside fenced code blocks (their contents are not links or headings)."""
    return FENCE.sub("", text)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for line in prose(page.read_text()).splitlines():
        if match := re.match(r"#{1,6} (.+)", line):
            base = anchor(match[1])
            name, k = base, 0
            while name in found:  # a repeated heading gets -1, -2, …
                k += 1
                name = f"{base}-{k}"
            found.add(name)
    return found


def relative_links(page: Path) -> list[str]:
    links = LINK.findall(SPAN.sub("", prose(page.read_text())))
    return [link for link in links if not re.match(r"[a-z]+:", link)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for link in relative_links(page):
        path, _, fragment = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif fragment and target.suffix == ".md" and fragment not in anchors(target):
            broken.append(f"{link}: no heading #{fragment} in {target.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


@cache
def command_options() -> dict[str, set[str]]:
    """Every flag of every console script, read from its typer app."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    found = {}
    for name, target in scripts.items():
        module, _, attribute = target.partition(":")
        command = typer.main.get_command(getattr(importlib.import_module(module), attribute))
        flags = {flag for param in command.params for flag in (*param.opts, *param.secondary_opts)}
        found[name] = {flag for flag in flags if flag.startswith("--")} | {"--help"}  # click's
    return found


HELP_OF_EVERY_SCRIPT = """
import importlib, sys, typer
for name, target in zip(sys.argv[1::2], sys.argv[2::2]):
    module, _, attribute = target.partition(":")
    command = typer.main.get_command(getattr(importlib.import_module(module), attribute))
    print(f"== {name}", flush=True)
    assert command.main(["--help"], prog_name=name, standalone_mode=False) == 0, name
"""


def test_every_commands_help_uses_100_columns_on_a_wide_terminal():
    """Help is laid out for 100 columns however wide the terminal (not click's 80, not the
    terminal's 200), in plain text."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    pairs = [value for item in scripts.items() for value in item]
    done = subprocess.run(
        [sys.executable, "-c", HELP_OF_EVERY_SCRIPT, *pairs],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    helps = dict(part.split("\n", 1) for part in done.stdout.split("== ")[1:])
    assert list(helps) == list(scripts)
    for name, text in helps.items():
        assert text.startswith(f"Usage: {name} "), (name, text[:80])
        widths = [len(line) for line in text.splitlines()]
        assert 80 < max(widths) <= 100, (name, max(widths))
        assert "─" not in text, f"{name}: help drawn in boxes, not plain text"


def named_options(tokens: list[str]) -> list[str]:
    """The flags among `tokens` (`--pad-context/--no-pad-context` is two; `--x=1` is --x)."""
    return [
        match[0] for token in tokens for part in token.split("/") if (match := OPTION.match(part))
    ]


def command_lines(text: str) -> list[tuple[str, list[str]]]:
    """(command, flags given to it) for each hvc command in the fenced blocks of `text`."""
    found = []
    for block in FENCE.findall(text):
        joined = re.sub(r"\\\n", " ", block)
        for line in joined.splitlines():
            for segment in re.split(r"&&|\|\||[|;]", line.split(" # ")[0]):
                tokens = segment.split()
                for k, token in enumerate(tokens):
                    if match := COMMAND.match(token):
                        found.append((f"hvc-{match[1]}", named_options(tokens[k + 1 :])))
                        break
    return found


def cli_page_options() -> list[tuple[str | None, str, str]]:
    """(command, flag, where) for each flag docs/cli.md names: in code blocks after the
    command, in code spans after a command or in the section of one (`## hvc-run` and its
    subsections)."""
    text = CLI_PAGE.read_text()
    found = [(c, flag, "code block") for c, flags in command_lines(text) for flag in flags]
    for section in re.split(r"^(?=## )", prose(text), flags=re.MULTILINE):
        heading = re.match(r"## [^\n]*?\bhvc-(run|eval|train|export)\b", section)
        command = f"hvc-{heading[1]}" if heading else None
        for span in SPAN.findall(section):  # a span may run over a line break
            tokens = span.split()
            if match := COMMAND.match(tokens[0]):
                found += [(f"hvc-{match[1]}", f, span) for f in named_options(tokens[1:])]
            elif OPTION.match(tokens[0]):
                found += [(command, flag, span) for flag in named_options(tokens)]
    return found


def test_every_option_the_cli_page_names_exists():
    options = command_options()
    everywhere = set().union(*options.values())
    unknown = [
        f"{command or 'any command'} {flag} (in `{where}`)"
        for command, flag, where in cli_page_options()
        if flag not in (options[command] if command else everywhere)
    ]
    assert not unknown, "docs/cli.md names options that do not exist: " + "; ".join(unknown)


def test_every_option_of_every_command_is_on_the_cli_page():
    named = {flag for _, flag, _ in cli_page_options()}
    missing = [
        f"{command} {flag}"
        for command, flags in command_options().items()
        for flag in sorted(flags - {"--help"})
        if flag not in named and not flag.startswith("--no-")
    ]
    assert not missing, "docs/cli.md does not name: " + ", ".join(missing)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_command_examples_use_existing_options(page):
    options = command_options()
    unknown = [
        f"{command} {flag}"
        for command, flags in command_lines(page.read_text())
        for flag in flags
        if flag not in options[command]
    ]
    assert not unknown, f"{page.name}: " + ", ".join(unknown)


def test_the_checks_catch_drift(tmp_path):
    """What the checks above rely on: a wrong anchor, a missing file and an unknown flag are
    found, and GitHub's anchors are computed as GitHub does."""
    assert anchor("Job lists (hvc-run --jobs)") == "job-lists-hvc-run---jobs"
    assert anchor("The fast mode gives the reference's masks") == (
        "the-fast-mode-gives-the-references-masks"
    )
    page = tmp_path / "page.md"
    page.write_text("# A title\n[a](#a-title) [b](#nope) [c](gone.md) [d](https://x.org/y)\n")
    assert relative_links(page) == ["#a-title", "#nope", "gone.md"]
    assert anchors(page) == {"a-title"}
    lines = command_lines("```bash\nhvc-run v.mp4 m.png --sizes 2 \\\n  --no-overlay\n```\n")
    assert lines == [("hvc-run", ["--sizes", "--no-overlay"])]
    assert "--sizes" not in command_options()["hvc-run"]
    assert "--no-overlay" in command_options()["hvc-run"]


def python_examples(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL)


def test_api_examples_run(tmp_path, monkeypatch):
    """Every Python example of docs/api.md, in order, on generated files of the names it uses."""
    panning_clip(tmp_path, frames=5, name="video.mp4")
    save_encoder(random_encoder().backbone, tmp_path / "hvc.safetensors", CheckpointHeader())
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    examples = python_examples(ROOT / "docs" / "api.md")
    assert len(examples) >= 2
    for example in examples:
        exec(example, namespace)  # our own documentation
    masks = namespace["masks"]
    assert len(masks) == 5 and all(m.shape == (64, 96) and m.dtype == np.uint8 for m in masks)
    assert set(np.unique(masks[-1])) == {0, 1, 2}
    assert len(list((tmp_path / "out" / "masks").glob("*.png"))) == 5
    assert (tmp_path / "out" / "overlay.mp4").stat().st_size > 0


@pytest.mark.realdata
def test_the_readme_figure_is_made_by_one_command(tmp_path):
    """docs/figure.py on a few small frames: a looping GIF of the shown frames and a record of
    what made it, with each shown frame's IoU against the ground truth."""
    out = tmp_path / "clip.gif"
    args = ["--davis", str(DAVIS2016), "--frames", "4", "--every", "2", "--size", "64"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "figure.py"), *args, "--width", "96", "--out", out],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    with Image.open(out) as gif:
        assert (gif.n_frames, gif.width, gif.info["loop"]) == (2, 96, 0)
    record = json.loads(out.with_suffix(".json").read_text())
    assert (
        record["sequence"] == "blackswan" and record["frames"] == 4 and record["short_side"] == 64
    )
    assert list(record["iou"]) == ["00002"] and 0 < record["iou"]["00002"] <= 1
    bad = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "figure.py"), "--davis", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1 and bad.stderr.startswith(f"error: {tmp_path}")
