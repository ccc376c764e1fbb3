"""The HVC training network: BYOL-style online/target pair with a pixel projector, a predictor and
the "flow" head (method description §1.2). Only the online trunk is kept for inference."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from hvc_runtime.encoder.network import StrideEightResNet
from hvc_train.loss import LossTerms, hvc_loss


class ProjectionBlock(nn.Module):
    """1×1 conv → BN → LeakyReLU, a residual 1×1 conv → BN → LeakyReLU, then a 1×1 conv."""

    def __init__(self, in_dim: int, inner_dim: int = 256, out_dim: int = 256) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, inner_dim, 1)
        self.bn1 = nn.BatchNorm2d(inner_dim)
        self.conv2 = nn.Conv2d(inner_dim, inner_dim, 1)
        self.bn2 = nn.BatchNorm2d(inner_dim)
        self.conv3 = nn.Conv2d(inner_dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = F.leaky_relu(self.bn1(self.conv1(x)), 0.01)
        x = F.leaky_relu(self.bn2(self.conv2(r) + r), 0.01)
        return self.conv3(x)


class FlowHead(nn.Module):
    """Two 256-channel maps concatenated by grid index → a 2-channel map."""

    def __init__(self, dim: int = 256, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(2 * dim, hidden, 1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 2, 1),
            nn.BatchNorm2d(2),
        )

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([a, b], dim=1))


class HVCNetwork(nn.Module):
    """Online trunk+projector+predictor, EMA target trunk+projector, flow head.

    The official projector reads layer4, which inference never uses and which costs about 70%
    of the trunk's training time at stride 8; `projector_layer="layer3"` trains the layer the
    runtime deploys directly, at a fraction of the cost."""

    def __init__(
        self, projector_layer: str = "layer4", projection_dim: int = 256, hidden_dim: int = 256
    ) -> None:
        super().__init__()
        self.online_encoder = StrideEightResNet("resnet18", projector_layer)
        self.online_projector = ProjectionBlock(
            self.online_encoder.feature_dim, hidden_dim, projection_dim
        )
        self.predictor = ProjectionBlock(projection_dim, hidden_dim, projection_dim)
        self.flow = FlowHead(projection_dim)
        self.target_encoder = copy.deepcopy(self.online_encoder)
        self.target_projector = copy.deepcopy(self.online_projector)
        for p in [*self.target_encoder.parameters(), *self.target_projector.parameters()]:
            p.requires_grad_(False)

    def forward(
        self, view1, view2, box1, box2, pos_radius: float, dynamic_sign: float
    ) -> LossTerms:
        """The symmetrised loss for a batch of normalised view pairs (see `hvc_train.loss`)."""
        p1, p2 = self.online(view1), self.online(view2)
        z1, z2 = self.target(view1), self.target(view2)
        return hvc_loss(p1, p2, z1, z2, box1, box2, self.flow, pos_radius, dynamic_sign)

    def online(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.predictor(self.online_projector(self.online_encoder(x))), dim=1)

    @torch.no_grad()
    def target(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.target_projector(self.target_encoder(x)), dim=1)

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """EMA of parameters only; BatchNorm buffers of the target are never synced (official)."""
        pairs = [
            (self.online_encoder, self.target_encoder),
            (self.online_projector, self.target_projector),
        ]
        for online, target in pairs:
            for p_o, p_t in zip(online.parameters(), target.parameters(), strict=True):
                p_t.mul_(momentum).add_(p_o.detach(), alpha=1 - momentum)


def momentum_at(step: int, total_steps: int, base: float = 0.99) -> float:
    """Cosine schedule from `base` at step 0 to 1 at the last step."""
    return 1 - (1 - base) * (math.cos(math.pi * step / max(total_steps, 1)) + 1) / 2
