"""The embedded demo: a small synthetic clip with two moving textured objects and its first mask.

Generated deterministically on first use (no footage to license, nothing large in the repo) and
cached under the user's hvc folder (`hvc_runtime.utils.cache.hvc_home`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from hvc_runtime.io.masks import write_palette_png
from hvc_runtime.utils.atomic import atomic_path
from hvc_runtime.utils.cache import hvc_home

DEMO_VERSION = 1
WIDTH, HEIGHT, FRAMES, FPS = 320, 240, 40, 12.0


def cache_dir() -> Path:
    return hvc_home() / f"demo-v{DEMO_VERSION}"


def _texture(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Smooth colour noise plus fine grain: enough structure for features to match."""
    coarse = rng.random((max(2, height // cells), max(2, width // cells), 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.random((height, width, 3)).astype(np.float32)
    return np.clip(255 * (0.8 * smooth + 0.2 * grain), 0, 255).astype(np.uint8)


def _object_masks(t: int) -> list[np.ndarray]:
    """A disc moving right along a wave and a square moving left."""
    disc = np.zeros((HEIGHT, WIDTH), np.uint8)
    cx = int(70 + 4.5 * t)
    cy = int(90 + 25 * np.sin(t / 6))
    cv2.circle(disc, (cx, cy), 34, 1, thickness=-1)
    square = np.zeros((HEIGHT, WIDTH), np.uint8)
    x0 = int(230 - 3.5 * t)
    square[150:210, x0 : x0 + 60] = 1
    return [disc, square]


def generate(folder: Path) -> tuple[Path, Path]:
    """Write `demo.mp4` and `demo-mask.png` (ids 1 and 2) into `folder`, atomically."""
    rng = np.random.default_rng(20261125)
    background = _texture(rng, HEIGHT, WIDTH, 16)
    textures = [_texture(rng, HEIGHT, WIDTH, 6), _texture(rng, HEIGHT, WIDTH, 4)]
    folder.mkdir(parents=True, exist_ok=True)
    video, mask_path = folder / "demo.mp4", folder / "demo-mask.png"
    staging = folder / ".demo.partial.mp4"
    writer = cv2.VideoWriter(str(staging), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    first_ids = np.zeros((HEIGHT, WIDTH), np.uint8)
    for t in range(FRAMES):
        frame = background.copy()
        for object_id, (mask, texture) in enumerate(
            zip(_object_masks(t), textures, strict=True), 1
        ):
            ys, xs = np.nonzero(mask)
            # the texture travels with the object: sample it relative to the object's corner
            frame[ys, xs] = texture[ys - ys.min(), xs - xs.min()]
            if t == 0:
                first_ids[mask > 0] = object_id
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    with atomic_path(mask_path) as tmp:  # the pair is only ever whole: `demo_inputs` trusts it
        write_palette_png(tmp, first_ids)
    staging.replace(video)
    return video, mask_path


def demo_inputs() -> tuple[Path, Path]:
    """The demo video and first-frame mask, generated on first use."""
    folder = cache_dir()
    video, mask = folder / "demo.mp4", folder / "demo-mask.png"
    if video.is_file() and mask.is_file():
        return video, mask
    return generate(folder)
