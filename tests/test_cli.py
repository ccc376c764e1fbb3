"""hvc-run and hvc-eval from the command line: the demo, real runs, and every bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import resnet50
from typer.testing import CliRunner

from hvc_runtime.cli import eval_app, run_app
from hvc_runtime.io.masks import read_mask, write_palette_png
from tests.conftest import DAVIS2016, smooth_texture

runner = CliRunner()


def run_cli(app, args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code, stderr, *fragments):
    assert code != 0
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_run_writes_masks_overlay_and_summary(clip, tmp_path):
    video, mask = clip
    out = tmp_path / "out"
    code, _, stderr = run_cli(run_app, [video, mask, "--out", out, "--device", "cpu"])
    assert code == 0, stderr
    masks = sorted((out / "masks").iterdir())
    assert [m.name for m in masks] == [f"{k:05d}.png" for k in range(6)]
    assert Image.open(masks[-1]).mode == "P"
    assert set(np.unique(read_mask(masks[-1]))) == {0, 1, 2}
    assert (out / "overlay.mp4").stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 6 and summary["object_ids"] == [1, 2]
    assert "default encoder" in stderr and "6 frames" in stderr and str(out / "masks") in stderr


def test_readme_demo_command(tmp_path):
    """`hvc-run` with no arguments: the embedded demo, as the README's first command."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    script = shutil.which("hvc-run")
    assert script, "hvc-run is not installed (pip install -e .)"
    done = subprocess.run(
        [script, "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "demo" / "masks").glob("*.png"))) == 40
    assert "default encoder" in done.stderr and "warning" not in done.stderr


def test_missing_and_undecodable_video(clip, tmp_path):
    _, mask = clip
    code, _, stderr = run_cli(run_app, [tmp_path / "nope.mp4", mask, "--out", tmp_path / "o"])
    assert_one_line_error(code, stderr, "nope.mp4", "no such video")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x01" * 500)
    code, _, stderr = run_cli(run_app, [broken, mask, "--out", tmp_path / "o"])
    assert_one_line_error(code, stderr, "broken.mp4")
    assert not (tmp_path / "o").exists()


def test_bad_masks_are_refused(clip, tmp_path):
    video, _ = clip
    cases = {}
    write_palette_png(tmp_path / "small.png", np.ones((32, 48), np.uint8))
    cases["small.png"] = "--resize-mask"
    write_palette_png(tmp_path / "empty.png", np.zeros((64, 96), np.uint8))
    cases["empty.png"] = "holds no object"
    Image.fromarray(smooth_texture(64, 96)).save(tmp_path / "rgb.png")
    cases["rgb.png"] = "RGB image is not an id mask"
    data = (tmp_path / "small.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    cases["cut.png"] = "not a readable mask"
    for name, fragment in cases.items():
        code, _, stderr = run_cli(run_app, [video, tmp_path / name, "--out", tmp_path / "o"])
        assert_one_line_error(code, stderr, name, fragment)
    assert not (tmp_path / "o").exists()
    code, _, stderr = run_cli(
        run_app,
        [video, tmp_path / "small.png", "--out", tmp_path / "o", "--resize-mask", "--no-overlay"],
    )
    assert code == 0, stderr


def test_wrong_architecture_checkpoint(clip, tmp_path):
    video, mask = clip
    torch.save(resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    code, _, stderr = run_cli(
        run_app, [video, mask, "--checkpoint", tmp_path / "r50.pth", "--out", tmp_path / "o"]
    )
    assert_one_line_error(code, stderr, "r50.pth", "unexpected keys", "layer1.0.conv3.weight")
    assert not (tmp_path / "o").exists()


def test_output_folder_with_other_files(clip, tmp_path):
    video, mask = clip
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, stderr = run_cli(run_app, [video, mask, "--out", out])
    assert_one_line_error(
        code, stderr, "busy", "not an earlier hvc-run result (notes.txt)", "--overwrite"
    )
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_rerun_replaces_its_own_previous_result(clip, tmp_path):
    video, mask = clip
    out = tmp_path / "again"
    for _ in range(2):
        code, _, stderr = run_cli(run_app, [video, mask, "--out", out, "--no-overlay"])
        assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["masks", "summary.json"]


def test_unavailable_device_and_bad_settings(clip, tmp_path):
    video, mask = clip
    if not torch.cuda.is_available():
        code, _, stderr = run_cli(
            run_app, [video, mask, "--device", "cuda", "--out", tmp_path / "o"]
        )
        assert_one_line_error(code, stderr, "CUDA is not available")
    code, _, stderr = run_cli(run_app, [video, mask, "--temperature", "0", "--out", tmp_path / "o"])
    assert_one_line_error(code, stderr, "temperature")
    code, _, stderr = run_cli(run_app, [video, mask, "--precision", "fp8", "--out", tmp_path / "o"])
    assert_one_line_error(code, stderr, "fp8")


def test_eval_run_on_a_generated_dataset(tmp_path):
    from tests.test_davis import make_dataset_with_frames

    make_dataset_with_frames(tmp_path / "davis", ["a"])
    results = tmp_path / "results"
    code, stdout, stderr = run_cli(
        eval_app, [results, "--davis", tmp_path / "davis", "--run", "--device", "cpu"]
    )
    assert code == 0, stderr
    assert (results / "global_results-val.csv").is_file()
    assert len(list((results / "a").glob("*.png"))) == 6
    assert "global" in stdout


@pytest.mark.slow
def test_eval_run_under_torchrun_splits_sequences_and_merges_scores(tmp_path):
    """Two processes (gloo on CPU) write disjoint shards; rank 0 scores them all, and the
    scores equal a single-process run's."""
    from tests.test_davis import make_dataset_with_frames

    names = ["a", "b", "c"]
    make_dataset_with_frames(tmp_path / "davis", names)
    common = ["--davis", str(tmp_path / "davis"), "--run", "--device", "cpu", "--no-pad-context"]
    single = tmp_path / "single"
    code, _, stderr = run_cli(eval_app, [single, *common])
    assert code == 0, stderr
    shards = tmp_path / "torchrun"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    done = subprocess.run(
        [*launch, "--nproc-per-node", "2", "--no-python", "--", "hvc-eval", str(shards), *common],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("global (objects)") == 1  # only rank 0 reports
    for name in names:
        assert len(list((shards / name).glob("*.png"))) == 6
    for csv in ("global_results-val.csv", "per-sequence_results-val.csv"):
        assert (shards / csv).read_text() == (single / csv).read_text()
    # a failure on rank 1 (sequence b) is reported by rank 1 itself, and the run fails
    broken = tmp_path / "davis" / "JPEGImages" / "480p" / "b" / "00002.jpg"
    broken.write_bytes(b"not a jpeg")
    failed = subprocess.run(
        [*launch, "--nproc-per-node", "2", "--no-python", "--", "hvc-eval",
         str(tmp_path / "broken"), *common],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert failed.returncode != 0
    assert "error:" in failed.stderr and "00002.jpg: not a readable image" in failed.stderr


@pytest.mark.realdata
def test_eval_scores_davis2016_ground_truth_as_perfect(tmp_path):
    """Ground truth scored against itself: J = F = 1 on the 5 val sequences."""
    code, _, stderr = run_cli(
        eval_app,
        [DAVIS2016 / "Annotations" / "480p", "--davis", DAVIS2016, "--csv-dir", tmp_path],
    )
    assert code == 0, stderr
    rows = (tmp_path / "global_results-val.csv").read_text().splitlines()
    assert rows[1] == "1.000,1.000,1.000,0.000,1.000,1.000,0.000"
    assert len((tmp_path / "per-sequence_results-val.csv").read_text().splitlines()) == 6
