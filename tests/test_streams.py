"""Videos whose container does not state a frame count (raw H.264 and MJPEG streams, MPEG-TS,
Matroska, fragmented MP4) next to those whose container does (MP4 with its index, MJPEG AVI),
from the command line: every frame is segmented, mask folders map to frames without a false
refusal, and no progress bar or error shows a count the file does not hold."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from hvc_runtime.cli import run_app
from hvc_runtime.io.frames import open_frames
from hvc_runtime.io.masks import write_palette_png
from tests.conftest import smooth_texture, write_video
from tests.test_cli import assert_one_line_error, run_cli
from tests.test_jobs import FAST, write_csv

FRAMES = 5
HEIGHT, WIDTH = 48, 64
# (file name, PyAV container format, codec, variable frame rate; None: written by OpenCV)
CONTAINERS = {
    "raw-h264": ("clip.h264", "h264", "libx264", False),
    "raw-mjpeg": ("clip.mjpeg", "mjpeg", "mjpeg", False),
    "mpeg-ts-vfr": ("clip.ts", "mpegts", "libx264", True),
    "matroska-vfr": ("clip.mkv", "matroska", "libx264", True),
    "mp4-vfr": ("clip.mp4", "mp4", "libx264", True),
    "fragmented-mp4-vfr": ("clip.mp4", "mp4", "libx264", True),
    "mjpeg-avi": ("clip.avi", None, "MJPG", False),
}
STATED = {"mp4-vfr", "mjpeg-avi"}  # the containers that record their frame count


def shots(count: int = FRAMES) -> list[np.ndarray]:
    texture = smooth_texture(HEIGHT, WIDTH + 2 * count + 8, seed=3)
    return [texture[:, 2 * t : 2 * t + WIDTH] for t in range(count)]


def write_stream(folder: Path, kind: str, count: int = FRAMES) -> Path:
    """`count` frames in the container `kind`; the variable-frame-rate ones alternate 50 ms and
    400 ms between frames, so that duration × rate (FFmpeg's guess) is far from the count."""
    name, fmt, codec, vfr = CONTAINERS[kind]
    path = folder / name
    if fmt is None:
        write_video(path, shots(count), fourcc=codec)
        return path
    av = pytest.importorskip("av")
    options = {"movflags": "frag_keyframe+empty_moov"} if kind.startswith("fragmented") else {}
    container = av.open(str(path), "w", format=fmt, options=options)
    stream = container.add_stream(codec, rate=10)
    stream.width, stream.height = WIDTH, HEIGHT
    stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    if vfr:
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
    pts = 0
    for k, rgb in enumerate(shots(count)):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if vfr:
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += 400 if k % 2 else 50
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
    container.close()
    return path


def mask_folder(folder: Path, frames: tuple[int, ...]) -> Path:
    """Masks named after frames of a video file (00000.png, ...), a new object in each."""
    folder.mkdir()
    for k, frame in enumerate(frames):
        ids = np.zeros((HEIGHT, WIDTH), np.uint8)
        ids[8 + 4 * k : 24 + 4 * k, 8 + 12 * k : 28 + 12 * k] = k + 1
        write_palette_png(folder / f"{frame:05d}.png", ids)
    return folder


def shown_counts(stderr: str) -> list[str]:
    """Every `done/total` a progress bar printed."""
    return re.findall(r"\b\d+/(\d+|\?)", stderr)


@pytest.mark.parametrize("kind", list(CONTAINERS))
def test_every_frame_of_every_container_with_a_mask_folder(tmp_path, kind):
    video = write_stream(tmp_path, kind)
    stated = open_frames(video).length
    assert stated == (FRAMES if kind in STATED else None)  # never FFmpeg's guess
    masks = mask_folder(tmp_path / "masks", (0, FRAMES - 1))
    out = tmp_path / "out"
    code, _, stderr = run_cli(run_app, [video, masks, "--out", out, *FAST])
    assert code == 0, stderr
    assert sorted(p.name for p in (out / "masks").iterdir()) == [
        f"{t:05d}.png" for t in range(FRAMES)
    ]
    assert json.loads((out / "summary.json").read_text())["frames"] == FRAMES
    assert set(shown_counts(stderr)) <= {str(FRAMES), "?"}, stderr
    assert "warning" not in stderr.replace("warning: encoder", "")


@pytest.mark.parametrize("kind", ["raw-h264", "mpeg-ts-vfr", "mjpeg-avi"])
def test_a_mask_past_the_end_names_the_real_length(tmp_path, kind):
    """Refused before the model loads, with the frames decoding found (or the file states)."""
    video = write_stream(tmp_path, kind)
    masks = mask_folder(tmp_path / "masks", (0, FRAMES + 3))
    code, _, stderr = run_cli(run_app, [video, masks, "--out", tmp_path / "out", *FAST])
    assert_one_line_error(
        code, stderr, f"{FRAMES + 3:05d}.png: mask names no frame of", f"it has {FRAMES} frames"
    )
    assert "encoder:" not in stderr and not (tmp_path / "out").exists()


def test_a_job_list_of_streams_counts_only_what_it_knows(tmp_path):
    """A raw stream's frames join the bar's total once it has been decoded; the opening line
    says how many videos' lengths are unknown instead of guessing them."""
    for kind in ("raw-h264", "mjpeg-avi"):
        (tmp_path / kind).mkdir()
        write_stream(tmp_path / kind, kind)
        mask_folder(tmp_path / kind / "masks", (0,))
    jobs = write_csv(
        tmp_path / "jobs.csv",
        [
            ("raw-h264/clip.h264", "raw-h264/masks", "h264"),
            ("mjpeg-avi/clip.avi", "mjpeg-avi/masks/00000.png", "avi"),
        ],
    )
    code, _, stderr = run_cli(run_app, ["--jobs", jobs, "--out", tmp_path / "R", *FAST])
    assert code == 0, stderr
    assert (
        f"2 to run ({FRAMES} frames and 1 video(s) whose container does not state a length)"
        in " ".join(stderr.split())
    )
    assert f"frames {2 * FRAMES}/{2 * FRAMES}" in stderr
    assert set(shown_counts(stderr)) <= {"2", str(2 * FRAMES), "?"}, stderr
    report = json.loads((tmp_path / "R" / "jobs.json").read_text())
    assert [(j["status"], j["frames"]) for j in report["jobs"]] == [("done", FRAMES)] * 2


def test_an_mjpeg_stream_is_a_video_and_a_jpeg_is_not(tmp_path):
    """PIL reads an MJPEG stream as its first JPEG: it must not be refused as a still image."""
    stream = write_stream(tmp_path, "raw-mjpeg")
    assert open_frames(stream).has_frame(FRAMES - 1)
    still = tmp_path / "still.jpg"
    still.write_bytes(stream.read_bytes()[: stream.read_bytes().index(b"\xff\xd9") + 2])
    code, _, stderr = run_cli(run_app, [still, tmp_path / "m.png", "--out", tmp_path / "o"])
    assert_one_line_error(code, stderr, "still.jpg: is a single image, not a video")


def test_masks_past_where_a_kept_video_stops_are_named(tmp_path):
    """A video cut short and kept (`--allow-partial`) never reaches a later mask's frame: the
    object it adds is nowhere in the result, and a warning says so."""
    video = write_stream(tmp_path, "mjpeg-avi", count=12)
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    masks = mask_folder(tmp_path / "masks", (0, 10))
    out = tmp_path / "out"
    code, _, stderr = run_cli(run_app, [video, masks, "--out", out, *FAST, "--allow-partial"])
    assert code == 0, stderr
    text = " ".join(stderr.split())
    assert "of the 12 frames the file declares; kept the" in text
    assert "the masks given for frames 00010 were not used" in text
