"""Shared fixtures: small generated inputs, and the `realdata` marker for ../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hvc_runtime.checkpoints import random_encoder

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
