"""Nothing lost, nothing silently wrong: bad inputs and faults end cleanly, from the command line.

Each case runs the real command on real files (videos cut short with OpenCV and PyAV, masks
saved the wrong way, weights with NaNs, real signals to a subprocess); disk-full and
out-of-memory faults come from a writer or an encoder patched to fail as the real ones do.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hvc_export.cli import app as export_app
from hvc_runtime.cli import eval_app, run_app
from hvc_runtime.encoder.checkpoints import CheckpointHeader, random_encoder, save_encoder
from hvc_runtime.io.masks import read_mask, write_palette_png
from hvc_runtime.propagation import PropagationConfig
from hvc_runtime.utils.atomic import file_mode
from hvc_runtime.utils.errors import HvcError, HvcWarning, OptionError
from hvc_train.cli import app as train_app
from tests.conftest import panning_clip, smooth_texture, write_video
from tests.test_cli import assert_one_line_error, run_cli

runner = CliRunner()


def run_ok(args):
    code, _, stderr = run_cli(run_app, [*args, "--device", "cpu"])
    assert code == 0, stderr
    return stderr


def entries(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else None


# -- data loss --------------------------------------------------------------------------------


def test_annotation_folder_is_never_taken_for_a_result(clip, tmp_path):
    """`--out ann` where ann/masks holds the user's own PNGs, the input mask among them."""
    video, _ = clip
    ann = tmp_path / "ann"
    (ann / "masks").mkdir(parents=True)
    mask = ann / "masks" / "00000.png"
    write_palette_png(mask, read_mask(clip[1]))
    write_palette_png(ann / "masks" / "00001.png", read_mask(clip[1]))
    before = {p.name: p.read_bytes() for p in (ann / "masks").iterdir()}
    code, _, stderr = run_cli(run_app, [video, mask, "--out", ann, "--device", "cpu"])
    assert_one_line_error(code, stderr, "not an earlier hvc-run result (masks)", "--overwrite")
    code, _, stderr = run_cli(run_app, [video, mask, "--out", ann, "--overwrite"])
    assert_one_line_error(code, stderr, "holds an input of this run", "00000.png")
    assert {p.name: p.read_bytes() for p in (ann / "masks").iterdir()} == before
    assert entries(ann) == ["masks"]


def test_rerun_of_another_video_leaves_no_mixed_result(clip, tmp_path):
    video, mask = clip
    out = tmp_path / "out"
    run_ok([video, mask, "--out", out])
    assert entries(out) == ["masks", "overlay.mp4", "summary.json"]
    (tmp_path / "other").mkdir()
    other, other_mask = panning_clip(tmp_path / "other", frames=4)
    run_ok([other, other_mask, "--out", out, "--no-overlay"])
    assert entries(out) == ["masks", "summary.json"]  # the first video's overlay is gone
    assert len(list((out / "masks").glob("*.png"))) == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tool"] == "hvc-run" and summary["outputs"] == ["masks"]
    assert summary["video"] == str(other)


def test_overwrite_keeps_the_users_other_files(clip, tmp_path):
    video, mask = clip
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    run_ok([video, mask, "--out", out, "--overwrite", "--no-overlay"])
    run_ok([video, mask, "--out", out, "--overwrite", "--no-overlay"])
    assert entries(out) == ["masks", "notes.txt", "summary.json"]
    assert (out / "notes.txt").read_text() == "mine"


def test_a_failed_swap_puts_the_earlier_result_back(clip, tmp_path, monkeypatch):
    video, mask = clip
    out = tmp_path / "out"
    run_ok([video, mask, "--out", out])
    before = {p.name: p.read_bytes() for p in (out / "masks").iterdir()}
    real_rename = Path.rename

    def rename(self, target):
        if self.name == "overlay.mp4" and ".hvc-run.partial" in str(self):
            raise OSError(errno.EIO, "Input/output error")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    code, _, stderr = run_cli(run_app, [video, mask, "--out", out, "--device", "cpu"])
    assert_one_line_error(code, stderr, "cannot move the result in")
    assert entries(out) == ["masks", "overlay.mp4", "summary.json"]
    assert {p.name: p.read_bytes() for p in (out / "masks").iterdir()} == before


def test_a_swap_killed_halfway_is_recovered_by_the_next_run(clip, tmp_path):
    video, mask = clip
    out = tmp_path / "out"
    run_ok([video, mask, "--out", out, "--no-overlay"])
    (out / ".hvc-run.replaced").mkdir()  # a commit killed after moving the old result aside
    (out / "summary.json").rename(out / ".hvc-run.replaced" / "summary.json")
    code, _, stderr = run_cli(run_app, [video, mask, "--out", out, "--no-overlay"])
    assert code == 0, stderr
    assert entries(out) == ["masks", "summary.json"]


def test_summaries_that_prove_nothing_and_summaries_of_the_first_version(clip, tmp_path):
    video, mask = clip
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "summary.json").write_text("[1, 2]")
    code, _, stderr = run_cli(run_app, [video, mask, "--out", odd])
    assert_one_line_error(code, stderr, "not an earlier hvc-run result (summary.json)")
    first = tmp_path / "first"
    (first / "masks").mkdir(parents=True)
    keys = ("video", "mask", "frames", "seconds", "masks", "overlay", "device", "propagation")
    (first / "summary.json").write_text(json.dumps(dict.fromkeys(keys, None)))
    (first / "overlay.mp4").write_bytes(b"old")
    run_ok([video, mask, "--out", first, "--no-overlay"])
    assert entries(first) == ["masks", "summary.json"]


def test_export_never_overwrites_its_source_and_asks_before_replacing(tmp_path):
    source = tmp_path / "mine.safetensors"
    save_encoder(random_encoder().backbone, source, CheckpointHeader(training={"steps": 1}))
    original = source.read_bytes()
    shapes = ["--min-shape", "64x64", "--opt-shape", "64x96", "--max-shape", "128x160"]
    for extra in ([], ["--overwrite"]):
        result = runner.invoke(
            export_app,
            [str(source), "--format", "torchscript", "--out", str(source), *shapes, *extra],
        )
        assert_one_line_error(result.exit_code, result.stderr, "is the source checkpoint")
    assert source.read_bytes() == original
    artifact = tmp_path / "enc.pt"
    args = [str(source), "--format", "torchscript", "--out", str(artifact), *shapes]
    assert runner.invoke(export_app, args).exit_code == 0
    first = artifact.read_bytes()
    result = runner.invoke(export_app, args)
    assert_one_line_error(result.exit_code, result.stderr, "enc.pt: already exists", "--overwrite")
    assert artifact.read_bytes() == first
    assert runner.invoke(export_app, [*args, "--overwrite"]).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "enc.pt",
        "enc.pt.json",
        "mine.safetensors",
    ]


# -- exit 0 with wrong results ----------------------------------------------------------------


def _cut(path, fraction):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _pyav_mp4(path, frames):
    av = pytest.importorskip("av")
    container = av.open(str(path), "w", options={"movflags": "faststart"})
    stream = container.add_stream("libx264", rate=12)
    stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
    for frame in frames:
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    container.mux(stream.encode())
    container.close()


@pytest.mark.parametrize("maker", ["opencv-avi", "pyav-mp4"])
def test_video_cut_short_is_an_error_unless_partial_is_allowed(clip, tmp_path, maker):
    _, mask = clip
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(20)]
    video = tmp_path / ("cut.avi" if maker == "opencv-avi" else "cut.mp4")
    if maker == "opencv-avi":
        write_video(video, frames, fourcc="MJPG")
    else:
        _pyav_mp4(video, frames)
    _cut(video, 0.5)
    out = tmp_path / "out"
    code, _, stderr = run_cli(run_app, [video, mask, "--out", out, "--device", "cpu"])
    assert_one_line_error(code, stderr, video.name, "of the 20 frames", "--allow-partial")
    assert not out.exists()
    stderr = run_ok([video, mask, "--out", out, "--allow-partial", "--no-overlay"])
    kept = len(list((out / "masks").glob("*.png")))
    assert 0 < kept < 20 and f"kept the {kept} decoded frames" in stderr and "warning:" in stderr


def test_masks_that_cannot_hold_the_intended_ids_are_refused(clip, tmp_path):
    video, mask = clip
    ids = read_mask(mask)
    Image.fromarray(ids * 100).save(tmp_path / "lossy.jpg", quality=90)
    binary = (ids > 0).astype(np.uint8) * 255
    soft = cv2.GaussianBlur(binary, (5, 5), 1.0)  # anti-aliased edges: a band of grey levels
    Image.fromarray(soft, mode="L").save(tmp_path / "soft.png")
    for name, fragment in {"lossy.jpg": "JPEG is lossy", "soft.png": "soft (anti-aliased)"}.items():
        code, _, stderr = run_cli(run_app, [video, tmp_path / name, "--out", tmp_path / "o"])
        assert_one_line_error(code, stderr, name, fragment)
    assert not (tmp_path / "o").exists()
    void = ids.copy()
    void[:4] = 255  # ids 1 and 2 with 255 as void: a grey mask, but no soft edges
    Image.fromarray(void, mode="L").save(tmp_path / "void.png")
    assert set(np.unique(read_mask(tmp_path / "void.png"))) == {0, 1, 2, 255}


def test_weights_that_are_not_finite_are_refused(clip, tmp_path):
    video, mask = clip
    trunk = random_encoder().backbone
    with torch.no_grad():
        trunk.layer1[0].conv1.weight[0, 0, 0, 0] = float("inf")
    save_encoder(trunk, tmp_path / "inf.safetensors", CheckpointHeader())
    code, _, stderr = run_cli(
        run_app,
        [video, mask, "--checkpoint", tmp_path / "inf.safetensors", "--out", tmp_path / "o"],
    )
    assert_one_line_error(code, stderr, "inf.safetensors", "layer1.0.conv1.weight", "non-finite")
    assert not (tmp_path / "o").exists()


def test_frame_names_without_padding_are_taken_in_numeric_order(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(1, 12):
        Image.fromarray(smooth_texture(40, 56, seed=t)).save(frames / f"{t}.png")
    mask = np.zeros((40, 56), np.uint8)
    mask[10:30, 10:30] = 1
    write_palette_png(tmp_path / "mask.png", mask)
    out = tmp_path / "out"
    stderr = run_ok([frames, tmp_path / "mask.png", "--out", out, "--no-overlay"])
    assert "warning:" in stderr and "numeric order (1.png, 2.png, ..., 11.png)" in stderr
    assert len(list((out / "masks").glob("*.png"))) == 11
    Image.fromarray(smooth_texture(40, 56, seed=3)).save(frames / "3.jpg")
    code, _, stderr = run_cli(run_app, [frames, tmp_path / "mask.png", "--out", tmp_path / "o"])
    assert_one_line_error(code, stderr, "several images named 3")
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("a.png", "a-1.png", "a-2.png"):  # text and numeric order agree: no warning
        Image.fromarray(smooth_texture(40, 56)).save(plain / name)
    stderr = run_ok([plain, tmp_path / "mask.png", "--out", tmp_path / "p", "--no-overlay"])
    assert "numeric order" not in stderr


def test_object_too_small_to_track_is_a_warning(clip, tmp_path):
    video, mask = clip
    ids = read_mask(mask)
    ids[2, 2] = 3  # one pixel between feature-grid points: it vanishes on the feature grid
    ids[0, 0] = 4  # one pixel on a grid point (the corner): as small, though it does not vanish
    ids[-1, -1] = 5
    write_palette_png(tmp_path / "tiny.png", ids)
    stderr = run_ok([video, tmp_path / "tiny.png", "--out", tmp_path / "o", "--no-overlay"])
    assert "warning: objects 3, 4, 5 smaller than one feature cell" in " ".join(stderr.split())


# -- one line for every failure, and nothing half written -------------------------------------


def test_disk_full_while_writing_masks(clip, tmp_path, monkeypatch):
    import hvc_runtime.io.writers as writers

    real = writers.write_palette_png
    written = []

    def fill_up(path, ids):
        if len(written) >= 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(path)
        real(path, ids)

    monkeypatch.setattr(writers, "write_palette_png", fill_up)
    video, mask = clip
    out = tmp_path / "out"
    code, _, stderr = run_cli(run_app, [video, mask, "--out", out, "--device", "cpu"])
    assert_one_line_error(code, stderr, "No space left on device")
    assert not out.exists()


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), EOFError()])
def test_disk_full_while_writing_the_overlay(clip, tmp_path, monkeypatch, failure):
    """PyAV reports a full disk as OSError or as an EOFError (which click would turn into a
    bare `Aborted.`): both become one line, and neither masks nor a partial video stay."""
    import hvc_runtime.io.writers as writers

    def broken(self, rgb):
        raise failure

    monkeypatch.setattr(writers._PyAvEncoder, "write", broken)
    monkeypatch.setattr(writers._OpenCvEncoder, "write", broken)
    video, mask = clip
    out = tmp_path / "out"
    out.mkdir()
    code, _, stderr = run_cli(run_app, [video, mask, "--out", out, "--device", "cpu"])
    assert_one_line_error(code, stderr, "overlay.mp4: cannot write the overlay video")
    assert entries(out) == []


@pytest.mark.parametrize(
    "message",
    [
        "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79 GiB",
        "[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: "
        "you tried to allocate 21474836480 bytes. Error code 12 (Cannot allocate memory)",
    ],
)
def test_out_of_memory_says_how_much_and_suggests_a_size(clip, tmp_path, monkeypatch, message):
    from hvc_runtime.encoder.backends.torch_module import TorchBackend

    def exhausted(self, frames):
        raise torch.OutOfMemoryError(message) if "CUDA" in message else RuntimeError(message)

    monkeypatch.setattr(TorchBackend, "__call__", exhausted)
    video, mask = clip
    out = tmp_path / "out"
    code, _, stderr = run_cli(run_app, [video, mask, "--out", out, "--size", "4000"])
    assert_one_line_error(code, stderr, "--size 4000: out of", "20.00 GiB", "smaller short side")
    assert not out.exists()


def test_checkpoints_that_are_not_weights(clip, tmp_path):
    from torchvision.models import resnet18

    video, mask = clip
    torch.save(resnet18(weights=None), tmp_path / "full.pth")
    (tmp_path / "enc.onnx").write_bytes(b"\x08\x07")
    for name, fragment in {"full.pth": "pickled Python objects", "enc.onnx": "no manifest"}.items():
        code, _, stderr = run_cli(
            run_app, [video, mask, "--checkpoint", tmp_path / name, "--out", tmp_path / "o"]
        )
        assert_one_line_error(code, stderr, name, fragment)
        assert "weights_only" not in stderr


def test_settings_that_cannot_apply_here(clip, tmp_path):
    video, mask = clip
    cases = {
        ("--backend", "torch-cudagraphs"): "--backend torch-cudagraphs: CUDA graphs need a CUDA",
        ("--kernel", "triton", "--mode", "reference"): "--kernel triton: only the fast mode",
        ("--kernel", "triton", "--no-fp32-scores"): "--kernel triton: the Triton kernel ranks",
        ("--kernel", "cuda"): "--kernel cuda: choose one of auto, torch, triton",
    }
    for extra, fragment in cases.items():
        code, _, stderr = run_cli(
            run_app, [video, mask, "--out", tmp_path / "o", "--device", "cpu", *extra]
        )
        assert_one_line_error(code, stderr, fragment)
    assert not (tmp_path / "o").exists()


def test_a_declared_count_a_frame_or_two_off_is_a_warning(clip):
    from hvc_runtime.io.frames import VideoFileSource

    video, _ = clip
    source = VideoFileSource(video)
    source._stated += 1  # a stated count one frame too high, as edit lists can make it
    with pytest.warns(HvcWarning, match="kept the 6 decoded frames"):
        assert len(list(source)) == 6
    source._stated += 4
    with pytest.raises(HvcError, match="cut short or corrupt"):
        list(source)


def test_eval_names_a_missing_results_folder(tmp_path):
    from tests.test_davis import make_dataset

    make_dataset(tmp_path / "davis", ["a"])
    code, _, stderr = run_cli(eval_app, [tmp_path / "nowhere", "--davis", tmp_path / "davis"])
    assert_one_line_error(code, stderr, "nowhere: results folder not found")
    (tmp_path / "results").mkdir()
    code, _, stderr = run_cli(eval_app, [tmp_path / "results", "--davis", tmp_path / "davis"])
    assert_one_line_error(code, stderr, "results/a: folder not found")
    for results in (tmp_path / "results", tmp_path / "nowhere"):  # the sequence comes first
        code, _, stderr = run_cli(
            eval_app, [results, "--davis", tmp_path / "davis", "--sequences", "a,nosuchseq"]
        )
        assert_one_line_error(code, stderr, "no sequence nosuchseq in the dataset (it has a)")


def test_eval_run_never_writes_into_the_dataset(tmp_path):
    from tests.test_davis import make_dataset

    make_dataset(tmp_path / "davis", ["a"])
    annotations = tmp_path / "davis" / "Annotations" / "480p"
    before = sorted(p.name for p in (annotations / "a").iterdir())
    code, _, stderr = run_cli(
        eval_app, [annotations, "--davis", tmp_path / "davis", "--run", "--overwrite"]
    )
    assert_one_line_error(code, stderr, "inside the dataset")
    assert sorted(p.name for p in (annotations / "a").iterdir()) == before


# -- signals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_run_cleans_up_and_says_where(tmp_path, signum, code):
    video, mask = panning_clip(tmp_path, frames=400)
    out = tmp_path / "out"
    launch = [sys.executable, "-c", "from hvc_runtime.cli import run_app; run_app()"]
    process = subprocess.Popen(
        [*launch, str(video), str(mask), "--out", str(out), "--device", "cpu", "--no-overlay"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    staged = out / ".hvc-run.partial" / ".masks.partial"
    deadline = time.monotonic() + 240
    while len(list(staged.glob("*.png"))) < 3 and process.poll() is None:
        assert time.monotonic() < deadline, "the run never started writing masks"
        time.sleep(0.05)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1 and "/400; nothing written" in lines[0], stderr
    assert f"({signal.Signals(signum).name})" in lines[0]
    assert not out.exists()  # the run created it, and leaves nothing behind


# -- smaller ----------------------------------------------------------------------------------


def test_outputs_follow_the_users_umask(clip, tmp_path):
    video, mask = clip
    out = tmp_path / "out"
    run_ok([video, mask, "--out", out])
    for path in (out / "summary.json", out / "overlay.mp4", next((out / "masks").iterdir())):
        assert path.stat().st_mode & 0o777 == file_mode(), path
    save_encoder(random_encoder().backbone, tmp_path / "enc.safetensors", CheckpointHeader())
    assert (tmp_path / "enc.safetensors").stat().st_mode & 0o777 == file_mode()


def test_help_does_not_promise_a_shipped_checkpoint():
    for app in (run_app, eval_app, export_app):
        result = runner.invoke(app, ["--help"])
        assert result.exit_code == 0 and "shipped" not in result.stdout


# -- concurrent runs, settings, frame folders, masks and artifacts ---------------------------


def _launch_run(video, mask, out, *extra):
    launch = [sys.executable, "-c", "from hvc_runtime.cli import run_app; run_app()"]
    args = [str(video), str(mask), "--out", str(out), "--device", "cpu", "--no-overlay", *extra]
    return subprocess.Popen(
        [*launch, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _pause_once_staging(process, out):
    """Stop the run (SIGSTOP) once it has staged two masks: it then holds the folder for as
    long as the test needs, however fast the machine."""
    staged = out / ".hvc-run.partial" / ".masks.partial"
    deadline = time.monotonic() + 240
    while len(list(staged.glob("*.png"))) < 2 and process.poll() is None:
        assert time.monotonic() < deadline, "the run never started writing masks"
        time.sleep(0.02)
    process.send_signal(signal.SIGSTOP)
    assert process.poll() is None, process.communicate()


def test_two_runs_into_one_folder_never_share_it(tmp_path):
    """A second hvc-run into a folder another is writing is refused at once, naming the folder
    and the other process; the first finishes whole. A holder killed with -9 blocks nothing."""
    video, mask = panning_clip(tmp_path, frames=12)
    out = tmp_path / "out"
    first = _launch_run(video, mask, out)
    _pause_once_staging(first, out)
    second = _launch_run(video, mask, out)
    _, stderr = second.communicate(timeout=120)
    assert_one_line_error(second.returncode, stderr, str(out), f"process {first.pid}")
    assert ".partial" not in stderr and ".lock" not in stderr
    first.send_signal(signal.SIGCONT)
    _, stderr = first.communicate(timeout=240)
    assert first.returncode == 0, stderr
    assert len(list((out / "masks").glob("*.png"))) == 12
    assert json.loads((out / "summary.json").read_text())["frames"] == 12
    assert entries(out) == ["masks", "summary.json"]

    killed = _launch_run(video, mask, out)
    _pause_once_staging(killed, out)
    killed.kill()
    killed.communicate(timeout=60)
    run_ok([video, mask, "--out", out, "--no-overlay"])
    assert entries(out) == ["masks", "summary.json"]


def test_export_names_and_manifests_that_lie(clip, tmp_path):
    """`--out` must end in the format's suffix (a missing folder is made); an artifact whose
    manifest says another format, precision or feature size than the file is refused."""
    shapes = ["--min-shape", "64x64", "--opt-shape", "64x96", "--max-shape", "128x128"]
    code, _, stderr = run_cli(export_app, ["--format", "onnx", "--out", tmp_path / "x.pt", *shapes])
    assert_one_line_error(code, stderr, "x.pt: a onnx artifact is named *.onnx", "x.onnx")
    assert entries(tmp_path) == ["clip.mp4", "mask.png"]
    artifacts = {"onnx": tmp_path / "new" / "sub" / "enc.onnx", "torchscript": tmp_path / "e.pt"}
    for fmt, artifact in artifacts.items():
        code, _, stderr = run_cli(export_app, ["--format", fmt, "--out", artifact, *shapes])
        assert code == 0 and artifact.is_file(), stderr
    video, mask = clip
    lies = [
        ("onnx", {"precision": "fp16"}, "says precision fp16", "tensor(float)"),
        ("onnx", {"feature_dim": 512}, "says 512-d features", "returns 256-d"),
        ("onnx", {"format": "torchscript"}, "says format torchscript", "is an ONNX model"),
        ("torchscript", {"format": "onnx"}, "says format onnx", "is a zip archive"),
        ("torchscript", {"precision": "fp16"}, "says precision fp16", "holds float32 weights"),
        ("torchscript", {"precision": "bf16"}, "precision 'bf16' is not one artifacts are"),
        ("onnx", {"feature_dim": "256"}, "feature_dim '256' is not a feature size"),
    ]
    for fmt, lie, *fragments in lies:
        artifact = artifacts[fmt]
        manifest = Path(f"{artifact}.json")
        honest = manifest.read_text()
        manifest.write_text(json.dumps({**json.loads(honest), **lie}))
        code, _, stderr = run_cli(
            run_app, [video, mask, "--checkpoint", artifact, "--out", tmp_path / "o"]
        )
        assert_one_line_error(code, stderr, artifact.name, *fragments)
        manifest.write_text(honest)
    assert not (tmp_path / "o").exists()


NONSENSE_SETTINGS = [
    (run_app, ["--temperature", "nan"], "--temperature nan: must be a finite number"),
    (run_app, ["--temperature", "inf"], "--temperature inf: must be a finite number"),
    (run_app, ["--temperature", "1e-45"], "--temperature 1e-45: must be >= 0.0001"),
    (run_app, ["--radius", "nan"], "--radius nan: must be a finite number"),
    (run_app, ["--radius", "-inf"], "--radius -inf: must be a finite number"),
    (run_app, ["--topk", "5000"], "--topk 5000: must be 1..100"),
    (run_app, ["--context", "1000000000"], "--context 1000000000: must be 0..1000"),
    (run_app, ["--size", "0"], "--size 0: must be at least 8"),
    (eval_app, ["--temperature", "nan"], "--temperature nan: must be a finite number"),
    (train_app, ["--lr", "nan"], "--lr nan: must be a finite number"),
    (train_app, ["--lr", "100"], "--lr 100.0: must be in (0, 1]"),
    (train_app, ["--momentum", "2"], "--momentum 2.0: must be within [0, 1]"),
    (train_app, ["--pos-radius", "0"], "--pos-radius 0.0: must be > 0"),
    (train_app, ["--dynamic-sign", "inf"], "--dynamic-sign inf: must be a finite number"),
    (train_app, ["--min-crop", "nan"], "--min-crop nan"),
    (train_app, ["--val-size", "0"], "--val-size 0: must be at least 8"),
    (export_app, ["--workspace-gb", "nan"], "--workspace-gb nan: must be a positive number"),
    (export_app, ["--max-batch", "0"], "--max-batch 0: must be at least 1"),
]


@pytest.mark.parametrize(("app", "setting", "message"), NONSENSE_SETTINGS)
def test_settings_that_make_no_sense_are_refused(clip, tmp_path, app, setting, message):
    """Non-finite numbers and magnitudes that leave nothing meaningful (every frame after the
    first background, memory for a billion context frames): one line naming the flag."""
    video, mask = clip
    args = {
        run_app: [video, mask, "--out", tmp_path / "o"],
        eval_app: [tmp_path / "o", "--davis", tmp_path, "--run"],
        train_app: ["--out", tmp_path / "o", "--images", tmp_path],
        export_app: ["--out", tmp_path / "o" / "enc.onnx"],
    }[app]
    code, _, stderr = run_cli(app, [*args, *setting])
    assert_one_line_error(code, stderr, message)
    assert "Traceback" not in stderr and not (tmp_path / "o").exists()


def test_api_settings_of_the_wrong_kind_are_refused():
    for setting in ({"topk": 2.5}, {"context_size": True}, {"radius": float("nan")}):
        with pytest.raises(OptionError, match=next(iter(setting))):
            PropagationConfig(**setting)


def test_settings_that_blur_warn_and_a_huge_radius_means_everywhere(clip, tmp_path):
    video, mask = clip
    out = tmp_path / "o"
    stderr = run_ok([video, mask, "--out", out, "--temperature", "5", "--radius", "1e12"])
    assert "warning: temperature 5.0: above 1.0 the top-k matches" in " ".join(stderr.split())
    assert read_mask(out / "masks" / "00005.png").any()


def _frame_folder(root, count=6):
    root.mkdir()
    for t in range(count):
        Image.fromarray(smooth_texture(40, 56, seed=t)).save(root / f"{t:05d}.jpg")
    mask = np.zeros((40, 56), np.uint8)
    mask[10:30, 10:30] = 1
    write_palette_png(root.parent / "mask.png", mask)
    return root, root.parent / "mask.png"


def test_files_that_are_not_frames_in_a_frame_folder(tmp_path):
    """What copying from another system leaves beside each frame (AppleDouble `._*`, .DS_Store,
    Thumbs.db) and non-images are ignored with one warning; an image file that cannot be read
    is named before the run starts (no header) or at its frame (truncated)."""
    frames, mask = _frame_folder(tmp_path / "frames")
    for t in range(6):
        (frames / f"._{t:05d}.jpg").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # AppleDouble
    for name in (".DS_Store", "Thumbs.db", "desktop.ini", "notes.txt"):
        (frames / name).write_bytes(b"\x00" * 16)
    out = tmp_path / "out"
    stderr = run_ok([frames, mask, "--out", out, "--no-overlay"])
    lines = [line for line in stderr.splitlines() if "ignored" in line]
    assert len(lines) == 1 and "warning:" in lines[0], stderr
    assert "ignored 10 files that are not frames (.DS_Store, ._00000.jpg" in lines[0]
    assert "zero-padded" not in stderr
    assert entries(out / "masks") == [f"{t:05d}.png" for t in range(6)]

    (frames / "00003.jpg").write_bytes(b"")  # no image at all: named before any work
    code, _, stderr = run_cli(run_app, [frames, mask, "--out", tmp_path / "o"])
    assert_one_line_error(code, stderr, "00003.jpg: not a readable image")
    data = (frames / "00002.jpg").read_bytes()
    (frames / "00003.jpg").write_bytes(data[: len(data) // 3])  # truncated: named at its frame
    code, _, stderr = run_cli(run_app, [frames, mask, "--out", tmp_path / "o"])
    assert_one_line_error(code, stderr, "00003.jpg: not a readable image")
    assert "Traceback" not in stderr and not (tmp_path / "o").exists()


def test_an_image_given_as_the_video_is_refused(tmp_path):
    frames, mask = _frame_folder(tmp_path / "frames")
    (frames / "00000.jpg").rename(tmp_path / "still.dat")  # an image, whatever its name
    for image in (frames / "00001.jpg", tmp_path / "still.dat"):
        code, _, stderr = run_cli(run_app, [image, mask, "--out", tmp_path / "o"])
        assert_one_line_error(code, stderr, f"{image.name}: is a single image, not a video")
    assert str(frames) in stderr or "folder of frames" in stderr
    assert not (tmp_path / "o").exists()


def test_ffmpeg_says_nothing_of_its_own(clip, tmp_path):
    """A video without its index (cut short before the moov atom): only our line on stderr."""
    video, mask = clip
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(video.read_bytes()[:-2000])
    (tmp_path / "text.mp4").write_text("not a video")
    for bad in (cut, tmp_path / "text.mp4"):
        process = _launch_run(bad, mask, tmp_path / "o")
        _, stderr = process.communicate(timeout=240)
        assert_one_line_error(process.returncode, stderr, bad.name, "cannot open as a video")
        assert "moov" not in stderr and "@ 0x" not in stderr, stderr


def test_masks_in_other_image_modes(clip, tmp_path):
    """Modes whose values are ids are taken (16-bit, 1-bit, grey with alpha, and a
    16-bit 0/65535 binary mask); float and colour masks are refused naming the mode found."""
    video, mask = clip
    ids = read_mask(mask)
    cv2.imwrite(str(tmp_path / "ids16.png"), ids.astype(np.uint16))
    cv2.imwrite(str(tmp_path / "binary16.png"), (ids > 0).astype(np.uint16) * 65535)
    Image.fromarray(ids > 0).convert("1").save(tmp_path / "bits.png")
    Image.fromarray(ids, mode="L").convert("LA").save(tmp_path / "la.png")
    assert Image.open(tmp_path / "ids16.png").mode.startswith("I")
    expected = {"ids16.png": ids, "binary16.png": ids > 0, "bits.png": ids > 0, "la.png": ids}
    for name, want in expected.items():
        assert np.array_equal(read_mask(tmp_path / name), want.astype(np.uint8)), name
    run_ok([video, tmp_path / "ids16.png", "--out", tmp_path / "ok", "--no-overlay"])

    Image.fromarray(ids.astype(np.float32) / 4).save(tmp_path / "float.tif")  # 0.25, 0.5
    Image.fromarray(ids, mode="L").convert("CMYK").save(tmp_path / "cmyk.tif")
    cv2.imwrite(str(tmp_path / "big16.png"), ids.astype(np.uint16) * 1000)
    refusals = {
        "float.tif": "F image is not an id mask (32-bit float: values between ids would be",
        "cmyk.tif": "CMYK image is not an id mask; expected a palette (P), grey-level (L)",
        "big16.png": "ids above 255 are not supported (max 2000)",
    }
    for name, fragment in refusals.items():
        code, _, stderr = run_cli(run_app, [video, tmp_path / name, "--out", tmp_path / "o"])
        assert_one_line_error(code, stderr, name, fragment)
        assert "holds no object" not in stderr
    assert not (tmp_path / "o").exists()


def test_summary_paths_are_absolute(clip, tmp_path, monkeypatch):
    video, mask = clip
    monkeypatch.chdir(tmp_path)
    run_ok([video.name, mask.name, "--out", "rel", "--no-overlay"])
    summary = json.loads((tmp_path / "rel" / "summary.json").read_text())
    assert summary["video"] == str(video.resolve()) and summary["mask"] == str(mask.resolve())
    assert summary["masks"] == str((tmp_path / "rel" / "masks").resolve())


def test_an_export_to_a_path_another_export_is_writing_is_refused(tmp_path):
    from hvc_runtime.utils.locks import FolderLock

    out = tmp_path / "enc.onnx"
    held = FolderLock(tmp_path, ".enc.onnx.lock", "hvc-export", target=out)  # as another would
    staging = tmp_path / ".enc.onnx.partial"
    staging.write_bytes(b"the other export's half-written artifact")
    code, _, stderr = run_cli(export_app, ["--format", "onnx", "--out", out])
    assert_one_line_error(code, stderr, f"{out}: another hvc-export (process {os.getpid()})")
    assert staging.exists()  # the refused export never touches the other one's staging file
    staging.unlink()
    held.release()
    assert entries(tmp_path) == []


def test_eval_ignores_the_hidden_files_beside_annotations(tmp_path):
    from tests.test_davis import make_dataset

    make_dataset(tmp_path / "davis", ["a"])
    annotations = tmp_path / "davis" / "Annotations" / "480p" / "a"
    shutil.copytree(annotations, tmp_path / "results" / "a")  # a perfect result
    for t in range(6):
        (annotations / f"._{t:05d}.png").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    code, _, stderr = run_cli(eval_app, [tmp_path / "results", "--davis", tmp_path / "davis"])
    assert code == 0, stderr
    rows = list(csv.reader((tmp_path / "results" / "global_results-val.csv").open()))
    assert float(rows[1][0]) == 1.0


def test_two_eval_runs_into_one_results_folder_never_share_it(tmp_path):
    """`hvc-eval --run` locks RESULTS as hvc-run locks its folder: a second one into it is
    refused at once naming the first (with --overwrite too), and the first scores whole."""
    from tests.test_davis import make_dataset

    davis, results = tmp_path / "davis", tmp_path / "results"
    make_dataset(davis, ["a", "b"])
    for name in ("a", "b"):
        for t in range(6):
            Image.fromarray(smooth_texture(40, 60, seed=t)).save(
                davis / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
            )
    args = [results, "--davis", davis, "--run", "--device", "cpu", "--no-pad-context"]
    launch = [sys.executable, "-c", "from hvc_runtime.cli import eval_app; eval_app()"]
    first = subprocess.Popen(
        [*launch, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    while not (results / ".hvc-eval.lock").exists() and first.poll() is None:
        assert time.monotonic() < deadline, "the first run never claimed the results folder"
        time.sleep(0.02)
    first.send_signal(signal.SIGSTOP)
    try:
        for extra in ([], ["--overwrite"]):
            code, _, stderr = run_cli(eval_app, [*args, *extra])
            assert_one_line_error(
                code, stderr, f"{results}: another hvc-eval --run (process {first.pid})"
            )
    finally:
        first.send_signal(signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=240)
    assert first.returncode == 0, stderr
    assert "global (objects)" in stdout
    assert entries(results) == ["a", "b", "global_results-val.csv", "per-sequence_results-val.csv"]


def test_a_demo_cut_short_while_it_is_generated_leaves_no_half_pair(tmp_path, monkeypatch):
    """The demo's clip and mask are reused whenever both are in the cache: a generation that
    dies writing the mask must leave neither, or every later demo would fail on it."""
    import hvc_runtime.cli.demo as demo

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def killed(path, ids):
        Path(path).write_bytes(b"\x89PNG\r\n\x1a\n")  # the first bytes, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "write_palette_png", killed)
    code, _, stderr = run_cli(run_app, ["--demo", "--out", tmp_path / "o", "--device", "cpu"])
    assert code == 130, stderr
    left = entries(demo.cache_dir())
    assert "demo-mask.png" not in left and "demo.mp4" not in left, left
