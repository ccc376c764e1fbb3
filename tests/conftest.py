"""Shared fixtures: small generated inputs, and the `realdata` marker for ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

# Triton kernels run in its CPU interpreter where there is no NVIDIA GPU; the choice is made
# when triton is first imported (torchvision imports it), so it comes before every import.
if not Path("/dev/nvidiactl").exists():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import pytest

from hvc_runtime.encoder.checkpoints import random_encoder

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DAVIS2016 = SHARED_DATA / "davis2016"
PARITY = SHARED_DATA / "parity" / "official-hvc-r18-random"


def pytest_collection_modifyitems(config, items):
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real data not present at {SHARED_DATA}")
    for item in items:
        if "realdata" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def encoder():
    return random_encoder(seed=0)


def smooth_texture(height: int, width: int, seed: int = 0, cells: int = 6) -> np.ndarray:
    """Colour noise smoothed to a few cells: texture that stride-8 features can match."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.random((height // cells + 1, width // cells + 1, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(255 * smooth, 0, 255).astype(np.uint8)


def write_video(path, frames, fps=10.0, fourcc="mp4v"):
    """Frames (RGB) as a video file through OpenCV."""
    import cv2

    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*fourcc), fps, frames[0].shape[1::-1]
    )
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def panning_clip(folder: Path, frames: int = 6, name: str = "clip.mp4") -> tuple[Path, Path]:
    """A panning clip (mp4, 64x96) and its first-frame mask with two objects."""
    from hvc_runtime.io.masks import write_palette_png

    margin = 2 * frames + 8
    texture = smooth_texture(64, 96 + margin + 4, seed=7)
    shots = [texture[:, margin - 2 * t : margin - 2 * t + 96] for t in range(frames)]
    write_video(folder / name, shots)
    mask = np.zeros((64, 96), np.uint8)
    mask[10:30, 10:40] = 1
    mask[35:60, 50:90] = 2
    write_palette_png(folder / "mask.png", mask)
    return folder / name, folder / "mask.png"


@pytest.fixture
def clip(tmp_path):
    """A 6-frame panning clip (mp4) and its first-frame mask with two objects."""
    return panning_clip(tmp_path)


def image_tree(root: Path, count: int, height: int, width: int) -> Path:
    """`count` textured JPEGs (0.jpg, 1.jpg, ...) in `root`: a small image-tree training set."""
    from PIL import Image

    for k in range(count):
        Image.fromarray(smooth_texture(height, width, seed=k, cells=4)).save(root / f"{k}.jpg")
    return root
