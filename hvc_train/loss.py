"""The HVC objective (method description §2.2): static and dynamic terms over nearby positions.

For each sample, position pairs (i in the query view, j in the key view) whose cell centres are
closer than `pos_radius` (in units of the larger cell diagonal) are positives. The static term
is the mean cosine of positive pairs; the dynamic term the mean cosine between the flow head's
forward and backward unit vectors over the same pairs. H = -2·(mean S + mean D), symmetrised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hvc_train.crops import cell_centres


@dataclass
class LossTerms:
    total: torch.Tensor
    static: torch.Tensor
    dynamic: torch.Tensor
    positives: torch.Tensor  # mean positive pairs per sample


def positive_pairs(
    box_q: torch.Tensor, box_k: torch.Tensor, grid: int, pos_radius: float
) -> torch.Tensor:
    """[B, grid², grid²] 0/1 mask of position pairs closer than pos_radius."""
    centres_q, diag_q = cell_centres(box_q, grid)
    centres_k, diag_k = cell_centres(box_k, grid)
    distance = torch.cdist(centres_q, centres_k) / torch.maximum(diag_q, diag_k)[:, None, None]
    return (distance < pos_radius).float()


def one_direction(
    q: torch.Tensor,
    k: torch.Tensor,
    box_q: torch.Tensor,
    box_k: torch.Tensor,
    flow: nn.Module,
    pos_radius: float,
    dynamic_sign: float,
) -> LossTerms:
    """H(q, k): gradients flow through q; k is the (stop-gradient) target."""
    k = k.detach()
    grid = q.shape[-1]
    positives = positive_pairs(box_q, box_k, grid, pos_radius)
    count = positives.sum((1, 2))
    qf, kf = q.flatten(2).float(), k.flatten(2).float()
    static = torch.einsum("bci,bij,bcj->b", qf, positives, kf) / (count + 1e-6)
    forward = F.normalize(flow(q, k).float(), dim=1).flatten(2)
    backward = F.normalize(flow(k, q).float(), dim=1).flatten(2)
    dynamic = torch.einsum("bci,bij,bcj->b", forward, positives, backward) / (count + 1e-6)
    total = -2 * (static.mean() + dynamic_sign * dynamic.mean())
    return LossTerms(total, static.mean(), dynamic.mean(), count.mean())


def hvc_loss(
    p1: torch.Tensor,
    p2: torch.Tensor,
    z1: torch.Tensor,
    z2: torch.Tensor,
    box1: torch.Tensor,
    box2: torch.Tensor,
    flow: nn.Module,
    pos_radius: float = 0.1,
    dynamic_sign: float = 1.0,
) -> LossTerms:
    """Symmetrised objective: H(p1, z2) + H(p2, z1)."""
    a = one_direction(p1, z2, box1, box2, flow, pos_radius, dynamic_sign)
    b = one_direction(p2, z1, box2, box1, flow, pos_radius, dynamic_sign)
    return LossTerms(
        a.total + b.total,
        (a.static + b.static) / 2,
        (a.dynamic + b.dynamic) / 2,
        (a.positives + b.positives) / 2,
    )
