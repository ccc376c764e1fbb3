"""A CPU smoke run of the benchmark suite: every output is produced and well-formed.
Timings are never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from benchmarks.cases import feature_setting
from benchmarks.latency import app
from benchmarks.profile_propagation import app as profile_app
from benchmarks.publish import END, START, update
from hvc_runtime.io.masks import write_palette_png
from tests.conftest import DAVIS2016, smooth_texture

ROOT = Path(__file__).resolve().parents[1]


def _small_davis(root: Path, frames: int = 4) -> Path:
    """The two DAVIS-2016 sequences the benchmark reads (blackswan, bmx-trees), small: textured
    frames and a square that moves, so the DAVIS parts run in seconds on any machine."""
    for seed, name in enumerate(("blackswan", "bmx-trees")):
        for t in range(frames):
            image = root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(smooth_texture(64, 96, seed=seed + t)).save(image)
            mask = np.zeros((64, 96), np.uint8)
            mask[16:48, 20 + 2 * t : 52 + 2 * t] = 1
            annotation = root / "Annotations" / "480p" / name / f"{t:05d}.png"
            annotation.parent.mkdir(parents=True, exist_ok=True)
            write_palette_png(annotation, mask)
    return root


def test_smoke_run_writes_json_table_and_plots(tmp_path):
    out = tmp_path / "bench"
    davis = _small_davis(tmp_path / "davis")
    args = [
        "--backends", "torch-eager-fp32,torch-eager-half-cl,onnxruntime-cpu,tensorrt",
        "--sizes", "64x96", "--batches", "1,2", "--dims", "256", "--contexts", "3,1",
        "--feature-dtypes", "fp32,bf16-scores",
        "--warmup", "0", "--runs", "2", "--e2e-frames", "3", "--e2e-size", "64x96",
        "--memory-lengths", "5,20", "--memory-grid", "4x6", "--agreement-frames", "3",
        "--davis", str(davis), "--device", "cpu", "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    data = json.loads((out / "latency.json").read_text())
    assert data["environment"]["device"] == "cpu" and data["environment"]["versions"]["torch"]
    measured_on = data["environment"]["measured_at"][:10]
    assert f"on {measured_on}" in (out / "latency.md").read_text()
    encoder = data["encoder"]
    assert {r["backend"] for r in encoder} == {
        "torch-eager-fp32",
        "torch-eager-bf16-cl",
        "onnxruntime-cpu",
    }
    assert all(r["median_ms"] > 0 and r["runs"] == 2 and r["speedup"] > 0 for r in encoder)
    assert all(r["first_call_ms"] > 0 for r in encoder)  # compilation is reported apart
    assert {r["batch"] for r in encoder} == {1, 2}
    assert [(r["implementation"], r["features"], r["context"]) for r in data["propagation"]] == [
        ("reference", "fp32", "1+3"),
        ("fast", "fp32", "1+3"),
        ("fast", "bf16-scores", "1+3"),
        ("reference", "fp32", "1+1"),
        ("fast", "fp32", "1+1"),
        ("fast", "bf16-scores", "1+1"),
    ]
    assert data["propagation"][0]["speedup"] == 1.0 and data["propagation"][1]["speedup"] > 0
    assert data["end_to_end"][0]["video"] == "generated" and data["end_to_end"][0]["frames"] == 3
    assert {r["mode"] for r in data["end_to_end"]} == {"fast"}
    assert all(r["fps_compute_only"] > 0 for r in data["end_to_end"])
    assert all(r["fps_device_only"] is None for r in data["end_to_end"])  # on a CPU, the same
    # 3 frames never fill a context of 50: no steady-state figure rather than a wrong one
    assert all(r["steady_fps_end_to_end"] is None for r in data["end_to_end"])
    # a DAVIS sequence played forth and back to the requested length
    assert data["end_to_end"][1]["frames"] == 3 and "blackswan" in data["end_to_end"][1]["video"]
    assert [r["frames"] for r in data["memory"]] == [5, 20]
    rows = data["agreement"]
    assert [r["backend"] for r in rows] == ["torch", "torchscript", "onnxruntime"]
    assert all(r["frames"] == 3 and r["pixel_agreement_pct"] >= 99.9 for r in rows)
    assert "Fast vs reference masks" in (out / "latency.md").read_text()
    assert any(s["backend"] == "tensorrt" for s in data["skipped"])
    assert any(s["backend"] == "fast-triton" for s in data["skipped"])  # no GPU here
    table = (out / "latency.md").read_text()
    assert "| torch-eager-fp32 | 64x96 | 1 |" in table and "Skipped: tensorrt" in table
    summary = table[table.index("**Summary** (targets for a 2-core CPU)") :]
    assert "| propagation 480p" not in summary  # 64x96 rows are not the 480p targets
    assert "|   over the whole video, frames/s |" in summary
    for plot in ("encoder.png", "propagation.png", "memory.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = tmp_path / "performance.md"
    page.write_text(f"# x\n{START}\nold\n{END}\nrest\n")
    update(page, out / "latency.json")
    text = page.read_text()
    assert "old" not in text and "| onnxruntime-cpu | 64x96 |" in text and text.endswith("rest\n")


def test_agreement_without_davis_data_is_recorded_as_skipped(tmp_path):
    missing = tmp_path / "no-davis"
    out = tmp_path / "bench"
    args = ["--agreement", "--davis", str(missing), "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    skipped = json.loads((out / "latency.json").read_text())["skipped"]
    assert {"backend": "agreement", "reason": f"no DAVIS data at {missing}"} in skipped


def test_gpu_benchmark_smoke_runs_every_part_and_records_each(tmp_path):
    """`--smoke --device cpu` runs the GPU benchmark's parts at tiny sizes: the kernel tests
    (in Triton's interpreter), propagation, end to end, memory, encoders; each part leaves its
    JSON and a status line, and the merged result names the commit it was given."""
    out = tmp_path / "out"
    environment = {**os.environ, "HVC_COMMIT": "0123abc"}
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    script = ROOT / "benchmarks" / "gpu" / "benchmark.sh"
    args = ["--smoke", "--device", "cpu", "--out", str(out), "--python", sys.executable]
    done = subprocess.run(
        ["bash", str(script), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    status = [json.loads(line) for line in (out / "status.jsonl").read_text().splitlines()]
    parts = ["tests", "propagation", "e2e", "memory", "agreement", "encoders"]
    assert [s["part"] for s in status] == parts
    assert all(s["rc"] == 0 for s in status), status
    assert 'failures="0"' in (out / "tests.xml").read_text()
    for name, key in [("propagation", "propagation"), ("e2e", "end_to_end"),
                      ("memory", "memory"), ("encoders", "encoder")]:  # fmt: skip
        assert json.loads((out / "parts" / name / "latency.json").read_text())[key]
    merged = json.loads((out / "run" / "latency.json").read_text())
    assert merged["environment"]["git_revision"] == "0123abc" or (ROOT / ".git").exists()
    assert {r["features"] for r in merged["propagation"]} == {"fp32", "bf16"}
    assert merged["end_to_end"][0]["frames"] == 6 and merged["memory"]
    assert any(s["backend"] == "fast-triton" for s in merged["skipped"])  # no GPU: said why
    assert any(s["backend"] == "agreement" for s in merged["skipped"])  # no DAVIS given: said
    assert "triton" in (out / "environment.txt").read_text()


def test_gpu_benchmark_keeps_within_its_budget_and_refuses_bad_options(tmp_path):
    """A part is only started with at least 10 s of the budget left (20 s kept for the merge):
    with --budget 25 none is, and each says so; a bad option is one line and exit status 2."""
    script = ROOT / "benchmarks" / "gpu" / "benchmark.sh"
    out = tmp_path / "out"
    args = ["bash", str(script), "--device", "cpu", "--out", str(out), "--python", sys.executable]
    done = subprocess.run([*args, "--budget", "25"], capture_output=True, text=True, timeout=60)
    status = [json.loads(line) for line in (out / "status.jsonl").read_text().splitlines()]
    assert len(status) == 6 and all(s["skipped"] == "no time left" for s in status), status
    assert done.returncode == 1  # not every part ran
    for bad, line in ((["--budget", "9x"], "error: --budget 9x: a whole number of seconds"),
                      (["--frames"], "error: unknown option --frames")):  # fmt: skip
        done = subprocess.run([*args, *bad], capture_output=True, text=True, timeout=60)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith(line), lines


def test_job_list_benchmark_smoke(tmp_path):
    """Jobs per hour and frames per second with and without read-ahead of the next video."""
    from benchmarks.job_list import app as job_list_app

    args = ["--jobs", "2", "--frames", "3", "--size", "64x96", "--device", "cpu"]
    result = CliRunner().invoke(job_list_app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    data = json.loads((tmp_path / "job_list.json").read_text())
    assert [r["read_ahead"] for r in data["job_list"]] == [False, True]
    assert all(r["jobs"] == 2 and r["frames"] == 5 for r in data["job_list"])
    assert all(r["jobs_per_hour"] > 0 and r["frames_per_second"] > 0 for r in data["job_list"])


def test_feature_settings_name_the_ranking_precision():
    assert feature_setting("fp32") == ("fp32", True)
    assert feature_setting("bf16") == ("bf16", True)  # bf16 features ranked by fp32 scores
    assert feature_setting("bf16-scores") == ("bf16", False)
    with pytest.raises(ValueError, match="bf16-ranked: not one of"):
        feature_setting("bf16-ranked")


def test_profile_writes_the_operator_table(tmp_path):
    out = tmp_path / "profile.md"
    args = ["--size", "32x48", "--dim", "16", "--context", "3", "--out", str(out)]
    result = CliRunner().invoke(profile_app, args)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("# One frame of fast propagation: 32x48 (4×6 cells), 16-d, context 1+3")
    assert "Self CPU" in text and "aten::topk" in text


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.filterwarnings(
    "ignore:This DataLoader will create 4 worker processes"
)  # the old default
def test_training_throughput_smoke_times_every_setting_and_writes_both_reports(tmp_path):
    from benchmarks.training_throughput import SETTINGS
    from benchmarks.training_throughput import app as throughput_app

    args = ["--videos", str(DAVIS2016), "--image-size", "32", "--batch-size", "2"]
    args += ["--steps", "1", "--data-batches", "1", "--follow-steps", "4", "--follow-size", "32"]
    args += ["--follow-batch", "2", "--out", str(tmp_path)]
    result = CliRunner().invoke(throughput_app, args)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "throughput.json").read_text())
    assert list(record["speed"]) == list(SETTINGS)
    assert all(rate > 0 for rate in record["speed"].values())
    assert set(record["data"]) == {"0", "1", "2"} and all(r > 0 for r in record["data"].values())
    assert list(record["follow"]) == ["fp32", "bf16 channels-last"]
    assert all(len(f["loss_windows"]) == 4 for f in record["follow"].values())
    table = (tmp_path / "throughput.md").read_text()
    assert all(f"| {name} |" in table for name in SETTINGS)


def test_scoring_floor_counts_each_disk_and_writes_both_reports(tmp_path):
    from benchmarks.scoring_floor import app as floor_app

    args = ["--size", "64x96", "--dim", "16", "--context", "3", "--threads", "2", "--runs", "1"]
    result = CliRunner().invoke(floor_app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "floor.json").read_text())["rows"]
    assert [row["score_dtype"] for row in rows] == ["float32", "bfloat16"]
    # 8×12 cells; radius 12 leaves out the grid's farthest corners (13.04 cells apart)
    ys, xs = torch.meshgrid(torch.arange(8), torch.arange(12), indexing="ij")
    dy = ys.reshape(-1, 1) - ys.reshape(1, -1)
    dx = xs.reshape(-1, 1) - xs.reshape(1, -1)
    pairs = int((dy**2 + dx**2 < 144).sum())
    assert pairs < 96 * 96
    for row in rows:
        assert row["disk_gflop"] == pytest.approx(2 * 16 * (pairs * 3 + 96 * 96) / 1e9)
        assert row["products_as_issued_gflop"] > row["disk_gflop"]
        assert row["fast_step_ms"] > 0 and row["products_as_issued_ms"] > 0
        assert row["disk_floor_ms"] > 0 and row["large_gemm_gflops"] > 0
    assert "| float32 | 2 | 64x96 | 16 | 1+3 |" in (tmp_path / "floor.md").read_text()
