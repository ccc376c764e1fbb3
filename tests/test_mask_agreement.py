"""The mask agreement benchmark on a small generated DAVIS-format dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from benchmarks.mask_agreement import app
from hvc_runtime.io.masks import write_palette_png


def _davis(root: Path, frames: int = 4) -> list[np.ndarray]:
    listing = root / "ImageSets" / "480p" / "val.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text("a\n")
    truth = []
    for t in range(frames):
        mask = np.zeros((16, 20), np.uint8)
        mask[4:12, 2 + t : 10 + t] = 1
        truth.append(mask)
    (root / "JPEGImages" / "480p" / "a").mkdir(parents=True)
    _write(root / "Annotations" / "480p" / "a", truth)
    return truth


def _write(folder: Path, masks: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t, mask in enumerate(masks):
        write_palette_png(folder / f"{t:05d}.png", mask)
    return folder


def _results(folder: Path, masks: list[np.ndarray]) -> Path:
    _write(folder / "a", masks)
    return folder


def test_agreement_counts_changed_pixels_and_scores_both(tmp_path):
    truth = _davis(tmp_path / "davis")
    baseline = _results(tmp_path / "base", truth)
    changed = [m.copy() for m in truth]
    changed[2][0, :4] = 1  # 4 pixels of 4 * 16 * 20 labelled otherwise
    candidate = _results(tmp_path / "cand", changed)
    out = tmp_path / "out"
    args = [str(baseline), str(candidate), "--davis", str(tmp_path / "davis"), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--candidate-settings", "bf16"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "agreement.json").read_text())
    (row,) = data["videos"]
    assert row["frames"] == 4
    assert row["pixel_agreement_pct"] == 100 * (1 - 4 / (4 * 16 * 20))
    assert row["jf_baseline"] == 100.0 and row["jf_candidate"] < 100.0
    assert row["jf_difference"] == row["jf_candidate"] - 100.0
    assert data["mean"]["pixel_agreement_pct"] == row["pixel_agreement_pct"]
    assert "| a | 4 |" in (out / "agreement.md").read_text()


def test_a_missing_candidate_mask_is_one_line_error(tmp_path):
    truth = _davis(tmp_path / "davis")
    baseline = _results(tmp_path / "base", truth)
    candidate = _results(tmp_path / "cand", truth[:3])
    args = [str(baseline), str(candidate), "--davis", str(tmp_path / "davis")]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: {candidate / 'a' / '00003.png'}: missing (the baseline has "
        f"{baseline / 'a' / '00003.png'})"
    ]
    assert not (tmp_path / "out").exists()
