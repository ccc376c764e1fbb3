"""Representation health: the figures on known features and filters, the check on the
collapsed GPU run against healthy encoders, and the figures and warning during training."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hvc_runtime.encoder.checkpoints import load_encoder, random_encoder
from hvc_runtime.encoder.network import IMAGENET_MEAN, IMAGENET_STD
from hvc_runtime.utils.errors import HvcWarning
from hvc_train import loop
from hvc_train.config import TrainConfig
from hvc_train.data import index_videos
from hvc_train.health import (
    Thresholds,
    dc_share,
    feature_figures,
    measure,
    probe_frames,
    spatial_convs,
)
from hvc_train.model import HVCNetwork
from tests.conftest import DAVIS2016, SHARED_DATA, smooth_texture

COLLAPSED = SHARED_DATA / "collapsed-run" / "encoder.safetensors"


def test_figures_of_known_features():
    rng = torch.Generator().manual_seed(0)
    isotropic = torch.randn(4, 16, 8, 8, generator=rng)
    rank, top, cosine = feature_figures(isotropic)
    assert 14 < rank <= 16 and top < 0.15 and abs(cosine) < 0.05
    direction = torch.randn(1, 16, 1, 1, generator=rng).expand(4, 16, 8, 8)
    collapsed = direction + 1e-3 * torch.randn(4, 16, 8, 8, generator=rng)
    rank, top, cosine = feature_figures(collapsed)
    assert rank < 16 and cosine > 0.999
    two = torch.zeros(2, 16, 4, 4)
    two[0, 0], two[1, 1] = 1.0, 1.0  # half the positions on one axis, half on another
    rank, top, cosine = feature_figures(two)
    assert rank == pytest.approx(1.0) and top == pytest.approx(1.0)
    assert cosine == pytest.approx((2 * 16 * 15) / (32 * 31))


def test_dc_share_of_known_filters():
    assert dc_share(torch.full((4, 8, 3, 3), 0.3)) == pytest.approx(1.0)
    weights = torch.randn(4, 8, 3, 3, generator=torch.Generator().manual_seed(1))
    assert dc_share(weights) < 10 / (8 * 9)  # random: 1/(in·k·k) expected
    assert dc_share(weights - weights.mean((1, 2, 3), keepdim=True)) == pytest.approx(0, abs=1e-12)


def _normalised(batch: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (batch.float() / 255 - mean) / std


@pytest.mark.realdata
def test_the_collapsed_run_is_flagged_and_healthy_encoders_pass():
    probe = _normalised(probe_frames(index_videos(DAVIS2016, "train").files, 8, 128))
    thresholds = Thresholds()
    torch.manual_seed(42)  # the collapsed run's seed: its initial weights
    init = HVCNetwork().online_encoder
    initial = {name: weight.detach().clone() for name, weight in spatial_convs(init).items()}
    collapsed = measure(load_encoder(COLLAPSED).encoder.backbone, probe, initial)
    problems = thresholds.problems(collapsed)
    assert len(problems) == 3, problems
    assert problems[0].startswith("layer1 filters hold 45% of their energy in the flat (DC)")
    assert problems[1].startswith("layer2 changes to the filters hold 64% of their energy")
    assert collapsed.effective_rank < 3.5 and collapsed.mean_cosine > 0.9
    healthy = {"random encoder": random_encoder().backbone, "training init": init}
    for name, trunk in healthy.items():
        figures = measure(trunk, probe, initial if trunk is init else None)
        assert thresholds.problems(figures) == [], name
        assert figures.effective_rank > 2 * thresholds.min_effective_rank, name
        assert max(figures.dc_share.values()) < 0.01, name


def test_training_logs_health_and_warns_once(tmp_path, monkeypatch, capsys):
    root = tmp_path / "images"
    root.mkdir()
    for k in range(4):
        Image.fromarray(smooth_texture(40, 48, seed=k, cells=4)).save(root / f"{k}.png")
    strict = Thresholds(min_effective_rank=1e6)  # every measurement crosses it
    monkeypatch.setattr(loop, "Thresholds", lambda: strict)
    config = TrainConfig(
        images=[str(root)], image_size=32, batch_size=2, max_steps=4, health_every=2,
        log_every=2, workers=0, device="cpu",
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = loop.train(config, tmp_path / "run", show_progress=True)
    assert [step for step, _ in result.health] == [0, 2, 4]
    collapse = [w for w in caught if issubclass(w.category, HvcWarning)]
    assert len(collapse) == 1 and str(collapse[0].message).startswith(
        "step 0: features are collapsing: layer-3 features have effective rank"
    )
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("step 4/4")]
    assert len(lines) == 1 and "rank " in lines[0] and " dc " in lines[0]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    ranks = [e.value for e in events.Scalars("health/effective_rank")]
    assert len(ranks) == 3 and all(np.isfinite(ranks)) and ranks[0] > 1
    assert "health/dc_share/layer1" in events.Tags()["scalars"]
    assert Path(tmp_path / "run" / "encoder.safetensors").is_file()
