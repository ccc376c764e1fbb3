"""Parity with the official implementation on real DAVIS frames (official-format random weights).

The official masks in ../shared/data/parity were written on an H100. Reproducing them needs the
official loader's BatchNorm side effect (`--official-bn-drift`); with it, the reference mode on
CPU fp32 matches them to within a few boundary pixels (whole-sequence figures: docs/parity.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from hvc_runtime.encoder.checkpoints import load_encoder
from hvc_runtime.io.frames import ImageFolderSource
from hvc_runtime.io.masks import read_mask
from hvc_runtime.segmenter import Segmenter
from tests.conftest import DAVIS2016, PARITY

FRAMES = 8


@pytest.mark.realdata
@pytest.mark.slow
def test_reference_and_fast_modes_match_official_fp32_on_blackswan():
    encoder = load_encoder(PARITY / "weights_official_format.pth", official_bn_drift=True).encoder
    modes = {mode: Segmenter(encoder, device="cpu", mode=mode) for mode in ("reference", "fast")}
    first = read_mask(DAVIS2016 / "Annotations" / "480p" / "blackswan" / "00000.png")
    agreement = []
    for frame in ImageFolderSource(DAVIS2016 / "JPEGImages" / "480p" / "blackswan"):
        if frame.index == FRAMES:
            break
        mask = first if frame.index == 0 else None
        ours = {mode: seg.step(frame.rgb, mask) for mode, seg in modes.items()}
        official = read_mask(PARITY / "official_fp32" / "blackswan" / f"{frame.name}.png")
        agreement.append(float((ours["reference"] == official).mean()))
        assert np.array_equal(ours["fast"], ours["reference"]), f"frame {frame.name}"
    print("per-frame agreement with official fp32:", [round(a, 5) for a in agreement])
    assert agreement[0] == 1.0  # the first mask goes through the same down/up-sampling
    assert min(agreement) >= 0.999
