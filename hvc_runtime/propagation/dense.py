"""Dense label propagation: the official HVC/DUL semantics, literally (the `reference` mode).

For every query position the affinity to every position of every context slot is scored
(duplicated slots included), short-term slots outside the radius get the official additive
-1e10, the top-k is taken jointly over all slots, and the soft labels are averaged with the
softmax of score/temperature. It is slow by design: it is what faster paths are checked against.
Each duplicated slot reuses the scores of its unique frame (identical numbers, computed once).
"""

from __future__ import annotations

import torch

from hvc_runtime.propagation.memory import ReferenceMemory
from hvc_runtime.propagation.numerics import score_matmul
from hvc_runtime.propagation.online import OnlinePropagator
from hvc_runtime.propagation.window import within_radius

_MASK_BIAS = -1e10  # the official additive radius mask (becomes -inf in fp16)
_CHUNK_BYTES = 256 * 2**20


def radius_bias(
    height: int, width: int, queries: torch.Tensor, radius: float, dtype: torch.dtype
) -> torch.Tensor:
    """[len(queries), h*w] additive mask: 0 where the key cell is within `radius` cells, else -1e10."""
    device = queries.device
    ys = torch.arange(height, device=device).repeat_interleave(width)
    xs = torch.arange(width, device=device).repeat(height)
    qy, qx = ys[queries, None], xs[queries, None]
    inside = within_radius(ys[None] - qy, xs[None] - qx, radius)
    return torch.where(inside, 0.0, _MASK_BIAS).to(dtype)


class DensePropagator(OnlinePropagator):
    """Dense official-semantics propagation: what every faster path is checked against."""

    def _predict(self, ref: ReferenceMemory, query: torch.Tensor) -> torch.Tensor:
        """Soft labels [C, h*w] for the query, from the context of one reference."""
        cfg = self.config
        height, width = self.grid
        positions = height * width
        context = cfg.context_indices(ref.frame, self.t)
        unique = list(dict.fromkeys(context))
        slot_to_unique = torch.tensor([unique.index(s) for s in context], device=query.device)
        keys = torch.cat([ref.features[u] for u in unique], dim=1)  # [D, U*hw]
        labels = torch.cat([ref.labels[u] for u in unique], dim=1)  # [C, U*hw]
        score_dtype = cfg.score_dtype(query.dtype)
        chunk = max(1, _CHUNK_BYTES // (len(context) * positions * score_dtype.itemsize))
        out = torch.empty(labels.shape[0], positions, dtype=torch.float32, device=query.device)
        for start in range(0, positions, chunk):
            queries = torch.arange(start, min(start + chunk, positions), device=query.device)
            scores = score_matmul(query[:, queries].T, keys, score_dtype)
            scores = scores.view(len(queries), len(unique), positions)
            affinity = scores[:, slot_to_unique]  # [n, slots, hw]: the dense official layout
            affinity[:, 1:] += radius_bias(height, width, queries, cfg.radius, affinity.dtype)[
                :, None
            ]
            affinity /= cfg.temperature
            top, index = affinity.view(len(queries), -1).topk(min(cfg.topk, affinity[0].numel()))
            weights = torch.softmax(top.float(), dim=-1)
            flat = slot_to_unique[index // positions] * positions + index % positions
            out[:, queries] = (labels[:, flat] * weights).sum(-1)
        return out
