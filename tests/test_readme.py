"""The README's Python API example runs as written (on generated files of the names it uses)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from hvc_runtime.encoder.checkpoints import CheckpointHeader, random_encoder, save_encoder
from tests.conftest import panning_clip

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example(section: str) -> str:
    """The first ```python block after the heading `section`."""
    text = README.read_text()
    after = text[text.index(section) :]
    return re.search(r"```python\n(.*?)```", after, re.DOTALL)[1]


def test_api_example_runs(tmp_path, monkeypatch):
    panning_clip(tmp_path, frames=5, name="video.mp4")
    save_encoder(random_encoder().backbone, tmp_path / "hvc.safetensors", CheckpointHeader())
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(python_example("### Python API"), namespace)  # our own README
    masks = namespace["masks"]
    assert len(masks) == 5 and all(m.shape == (64, 96) and m.dtype == np.uint8 for m in masks)
    assert set(np.unique(masks[-1])) == {0, 1, 2}
