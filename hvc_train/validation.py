"""Validation during training: the current online trunk, the runtime's propagation, and a score.

`clip_iou` is the quick default: the mean object IoU over the first frames of a few sequences,
propagated from the first mask; it takes seconds, so it can run often. `davis_jf` is the full
DAVIS J&F of every sequence of the split (minutes on a CPU).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from hvc_runtime.davis.dataset import DavisDataset
from hvc_runtime.davis.evaluation import evaluate
from hvc_runtime.davis.metrics import jaccard
from hvc_runtime.davis.propagate import propagate_sequence
from hvc_runtime.encoder.network import InferenceEncoder, StrideEightResNet
from hvc_runtime.io.frames import frame_files, read_rgb_image
from hvc_runtime.io.masks import read_mask
from hvc_runtime.segmenter import Segmenter
from hvc_runtime.utils.errors import HvcError

CLIP_SEQUENCES = 3  # the first sequences of the split
CLIP_FRAMES = 16  # the first frames of each; frame 0 gives the mask, 1..15 are scored
VOID = 255


def inference_trunk(online_encoder: StrideEightResNet) -> StrideEightResNet:
    """A layer3 copy of the online trunk (layer4 dropped), as the runtime deploys it."""
    trunk = StrideEightResNet("resnet18", "layer3")
    state = {k: v for k, v in online_encoder.state_dict().items() if not k.startswith("layer4.")}
    trunk.load_state_dict(state)
    return trunk.to(next(online_encoder.parameters()).device)


def _segmenter(
    online_encoder: StrideEightResNet, short_side: int | None, device: torch.device
) -> Segmenter:
    encoder = InferenceEncoder(inference_trunk(online_encoder)).eval()
    return Segmenter(encoder, device=device, short_side=short_side)


@torch.no_grad()
def clip_iou(
    online_encoder: StrideEightResNet,
    root: Path,
    split: str | None,
    short_side: int | None,
    device: torch.device,
    sequences: int = CLIP_SEQUENCES,
    frames: int = CLIP_FRAMES,
) -> float:
    """Mean IoU (0-1) per object and frame over frames 1..`frames`-1 of the first
    `sequences` sequences, propagated from frame 0's mask (annotated frames only)."""
    dataset = DavisDataset(Path(root))
    segmenter = _segmenter(online_encoder, short_side, device)
    scores: list[float] = []
    for name in dataset.sequences(split)[:sequences]:
        truths = {f.stem: f for f in dataset.annotation_files(name)}
        clip = [f for f in frame_files(dataset.frames_dir(name)) if f.stem in truths][:frames]
        segmenter.reset()
        objects: list[int] = []
        for k, frame in enumerate(clip):
            truth = read_mask(truths[frame.stem])
            first = np.where(truth == VOID, 0, truth) if k == 0 else None  # void is no object
            ids = segmenter.step(read_rgb_image(frame), first)
            if k == 0:
                objects = [int(i) for i in np.unique(truth) if i not in (0, VOID)]
                continue
            scored = truth != VOID
            scores += [jaccard((ids == i) & scored, truth == i) for i in objects]
    if not scores:
        raise HvcError(f"{root}: no sequence with two annotated frames to validate on")
    return float(np.mean(scores))


@torch.no_grad()
def davis_jf(
    online_encoder: StrideEightResNet,
    root: Path,
    split: str | None,
    short_side: int | None,
    device: torch.device,
) -> float:
    """J&F (0-1) of the online trunk on a DAVIS-format dataset, with the runtime's defaults."""
    dataset = DavisDataset(Path(root))
    names = dataset.sequences(split)
    segmenter = _segmenter(online_encoder, short_side, device)
    with tempfile.TemporaryDirectory(prefix="hvc-val-") as tmp:
        for name in names:
            propagate_sequence(dataset, name, segmenter, Path(tmp))
        return evaluate(dataset, Path(tmp), names).jf_mean


VALIDATORS = {"proxy": clip_iou, "jf": davis_jf}
