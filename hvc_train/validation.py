"""Periodic validation: the current online trunk, the runtime's propagation over a DAVIS-format
folder (first-frame masks), and the DAVIS J&F of the result."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from hvc_runtime.davis.dataset import DavisDataset
from hvc_runtime.davis.evaluation import evaluate
from hvc_runtime.davis.propagate import propagate_sequence
from hvc_runtime.encoders import InferenceEncoder, StrideEightResNet
from hvc_runtime.segmenter import Segmenter


def inference_trunk(online_encoder: StrideEightResNet) -> StrideEightResNet:
    """A layer3 copy of the online trunk (layer4 dropped), as the runtime deploys it."""
    trunk = StrideEightResNet("resnet18", "layer3")
    state = {k: v for k, v in online_encoder.state_dict().items() if not k.startswith("layer4.")}
    trunk.load_state_dict(state)
    return trunk.to(next(online_encoder.parameters()).device)


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
    encoder = InferenceEncoder(inference_trunk(online_encoder)).eval()
    segmenter = Segmenter(encoder, device=device, short_side=short_side)
    with tempfile.TemporaryDirectory(prefix="hvc-val-") as tmp:
        for name in names:
            propagate_sequence(dataset, name, segmenter, Path(tmp))
        return evaluate(dataset, Path(tmp), names).jf_mean
