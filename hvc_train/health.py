"""Representation health: cheap figures that show a trunk collapsing while it trains.

A negative-free objective can be satisfied by features that no longer tell positions apart.
On a fixed batch of real frames we measure, for the layer-3 features the runtime deploys:

- effective rank: exp of the entropy of the normalised eigenvalues of the covariance of the
  L2-normalised features (how many directions the positions really use);
- top component: the share of that variance in the first principal component;
- mean cosine between positions (the features are non-negative, so even healthy ones are
  high: informative, not a warning);

and, for the convolutions of layer1..layer3, the share of each k×k filter's energy in its mean
over (in, k, k), its DC component: the response to a flat input, a blur of the activations.
1×1 convolutions are left out (they have no spatial extent). The same share of the change
since step 0 shows the drift from the first steps, long before it dominates the weights.

Reference values on blackswan frame 0 at 854×480 (ImageNet statistics), measured with this
module: the collapsed official-recipe run (../shared/data/collapsed-run) effective rank 2.6,
top component 0.73, mean cosine 0.93, DC share layer1/2/3 0.45/0.44/0.36; the initial training
trunk 7.0, 0.58, 0.74, 0.002/0.001/0.001; the seeded random encoder 33.9, 0.26, 0.88,
0.002/0.001/0.001. `Thresholds` are set between them (see its docstring).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hvc_runtime.encoder.network import StrideEightResNet
from hvc_runtime.io.frames import read_rgb_image
from hvc_runtime.utils.errors import HvcError

STAGES = ("layer1", "layer2", "layer3")


@dataclass(frozen=True)
class HealthFigures:
    effective_rank: float
    top_component: float
    mean_cosine: float
    dc_share: dict[str, float]  # stage → mean DC share of its k×k filters
    update_dc_share: dict[str, float]  # the same for the change since the initial weights

    def scalars(self) -> dict[str, float]:
        """Flat name → value, for TensorBoard and tables."""
        flat = {k: v for k, v in asdict(self).items() if not isinstance(v, dict)}
        flat.update({f"dc_share/{stage}": v for stage, v in self.dc_share.items()})
        flat.update({f"update_dc_share/{stage}": v for stage, v in self.update_dc_share.items()})
        return flat

    def summary(self) -> str:
        """A short text for the progress line."""
        text = f"rank {self.effective_rank:.1f} dc {max(self.dc_share.values()):.2f}"
        if self.update_dc_share:
            text += f" update-dc {max(self.update_dc_share.values()):.2f}"
        return f"{text} cos {self.mean_cosine:.2f}"


@dataclass(frozen=True)
class Thresholds:
    """When the figures say the features are collapsing (all measured with this module).

    - DC share of the weights above 0.2 in a stage: random and initial filters hold
      0.001-0.002 (1/(in·k·k) for a random filter), the collapsed run 0.36-0.45 (its first
      convolutions of layer1 and layer2 0.54-0.62). 0.2 is 100 times the random level and
      about half the collapsed one.
    - DC share of the change since step 0 above 0.3 in a stage: a random change holds
      0.001-0.002; the first 30 steps of every recipe compared on CPU (128-pixel crops,
      batch 16) 0.025-0.115; the collapsed run's whole change 0.54-0.64 (seed 42 init).
    - Effective rank below 4: the collapsed run 2.6-3.0, the initial trunk 7.0-9.7 (low
      because the official init zeroes every residual branch), a random encoder 34-49; the
      first 30 CPU steps of every recipe raised it to 24-38.
    """

    max_dc_share: float = 0.2
    max_update_dc_share: float = 0.3
    min_effective_rank: float = 4.0

    def problems(self, figures: HealthFigures) -> list[str]:
        found = []
        for what, shares, limit in (
            ("filters", figures.dc_share, self.max_dc_share),
            ("changes to the filters", figures.update_dc_share, self.max_update_dc_share),
        ):
            stage, share = max(shares.items(), key=lambda item: item[1], default=("", 0.0))
            if share > limit:
                found.append(
                    f"{stage} {what} hold {share:.0%} of their energy in the flat (DC) "
                    f"component (limit {limit:.0%})"
                )
        if figures.effective_rank < self.min_effective_rank:
            found.append(
                f"layer-3 features have effective rank {figures.effective_rank:.1f} "
                f"(limit {self.min_effective_rank:g})"
            )
        return found


def feature_figures(features: torch.Tensor) -> tuple[float, float, float]:
    """(effective rank, top component share, mean cosine) of N×D×h×w features, positions
    of all N images pooled."""
    features = features.detach().cpu().double()  # MPS has no float64; the batch is small
    positions = F.normalize(features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]))
    centred = positions - positions.mean(0)
    variances = torch.linalg.eigvalsh(centred.T @ centred).clamp_min(0).flip(0)
    shares = variances / variances.sum().clamp_min(1e-300)
    entropy = -(shares * torch.log(shares.clamp_min(1e-300))).sum()
    count = positions.shape[0]
    total = positions.sum(0)
    mean_cosine = (total @ total - count) / max(count * (count - 1), 1)
    return float(torch.exp(entropy)), float(shares[0]), float(mean_cosine)


def dc_share(weights: torch.Tensor) -> float:
    """Mean over the filters of an out×in×k×k weight of the share of a filter's energy in its
    mean over (in, k, k); a random filter holds 1/(in·k·k) there."""
    flat = weights.detach().cpu().double().flatten(1)
    energy = (flat**2).sum(1).clamp_min(1e-300)
    return float((flat.mean(1) ** 2 * flat.shape[1] / energy).mean())


def spatial_convs(trunk: nn.Module, stages: tuple[str, ...] = STAGES) -> dict[str, torch.Tensor]:
    """The k×k (k > 1) convolution weights of `stages` (layer1..layer3), by parameter name."""
    return {
        name: weight
        for name, weight in trunk.named_parameters()
        if name.startswith(stages) and weight.ndim == 4 and weight.shape[-1] > 1
    }


def stage_dc_shares(weights: dict[str, torch.Tensor]) -> dict[str, float]:
    """Stage → mean `dc_share` of its convolutions in `weights` (named as `spatial_convs`)."""
    return {
        stage: float(np.mean([dc_share(w) for n, w in weights.items() if n.startswith(stage)]))
        for stage in STAGES
    }


@torch.no_grad()
def measure(
    trunk: StrideEightResNet,
    batch: torch.Tensor,
    initial: dict[str, torch.Tensor] | None = None,
) -> HealthFigures:
    """Health of `trunk` (its layer3 output, in eval mode) on a normalised N×3×H×W batch;
    with the `initial` weights (`spatial_convs` of the trunk at step 0), also the DC share of
    what training changed, which shows the drift long before the weights are dominated by it."""
    was_training = trunk.training
    trunk.eval()
    try:
        x = trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(batch))))
        features = trunk.layer3(trunk.layer2(trunk.layer1(x)))
    finally:
        trunk.train(was_training)
    rank, top, cosine = feature_figures(features.float())
    weights = spatial_convs(trunk)
    updates = {n: w - initial[n] for n, w in weights.items()} if initial is not None else {}
    return HealthFigures(
        rank,
        top,
        cosine,
        stage_dc_shares(weights),
        stage_dc_shares(updates) if updates else {},
    )


def probe_frames(files: list[Path], count: int, size: int) -> torch.Tensor | None:
    """Up to `count` readable images spread over `files` (first, last and evenly between),
    centre square crops resized to size×size: a uint8 N×3×size×size batch that stays fixed
    for a run; None if none is readable (training reports those files itself)."""
    picks = sorted({round(k * (len(files) - 1) / max(count - 1, 1)) for k in range(count)})
    views = []
    for k in picks:
        try:
            rgb = torch.from_numpy(read_rgb_image(files[k])).permute(2, 0, 1).float()
        except HvcError:
            continue
        side = min(rgb.shape[1:])
        top, left = (rgb.shape[1] - side) // 2, (rgb.shape[2] - side) // 2
        square = rgb[None, :, top : top + side, left : left + side]
        views.append(F.interpolate(square, size=(size, size), mode="bilinear", antialias=True))
    return torch.cat(views).round().clamp(0, 255).to(torch.uint8) if views else None
