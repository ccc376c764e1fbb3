"""Reference label propagation: the official HVC/DUL semantics, dense and literal.

For every query position the affinity to every position of every context slot is scored
(duplicated slots included), short-term slots outside the radius get the official additive
-1e10, the top-k is taken jointly over all slots, and the soft labels are averaged with the
softmax of score/temperature. It is slow by design: it is what faster paths are checked against.
Each duplicated slot reuses the scores of its unique frame (identical numbers, computed once).
"""

from __future__ import annotations

import torch

from hvc_runtime.propagation.config import PropagationConfig
from hvc_runtime.propagation.memory import ReferenceMemory

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
    inside = ((ys[None] - qy) ** 2 + (xs[None] - qx) ** 2).double().sqrt() < radius
    return torch.where(inside, 0.0, _MASK_BIAS).to(dtype)


class ReferencePropagator:
    """Online label propagation over feature maps, one frame at a time.

    `step` takes the current frame's features ([D, h, w], L2-normalised) and, optionally, soft
    label maps of objects that appear at this frame; it returns the soft label map of the frame
    over all channels known so far ([C, h, w]). Memory is bounded by the context size times the
    number of reference frames, never by the video length.
    """

    def __init__(self, config: PropagationConfig = PropagationConfig()) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        self.t = -1
        self.references: list[ReferenceMemory] = []
        self.num_channels = 0
        self.grid: tuple[int, int] | None = None

    def step(self, features: torch.Tensor, new_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Propagate to the next frame; `new_labels` ([N, h, w]) adds N channels from this frame."""
        dim, height, width = features.shape
        if self.grid is None:
            self.grid = (height, width)
        elif self.grid != (height, width):
            raise ValueError(f"feature grid changed from {self.grid} to {(height, width)}")
        if self.t < 0 and new_labels is None:
            raise ValueError("the first frame needs labels")
        self.t += 1
        query = features.reshape(dim, height * width)
        if self.references:
            labels = sum(
                ref.channels[:, None].to(torch.float32) * self._predict(ref, query)
                for ref in self.references
            )
        else:
            labels = query.new_zeros((0, height * width), dtype=torch.float32)
        if new_labels is not None and new_labels.shape[0] > 0:
            labels = self._add_objects(labels, new_labels.reshape(new_labels.shape[0], -1).float())
        stored = labels if self.config.soft_labels else _one_hot_like(labels)
        for ref in self.references:
            ref.store(self.t, query, stored)
            ref.evict(self.t, self.config.context_size)
        return labels.reshape(-1, height, width)

    def _add_objects(self, labels: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """Blend new objects in (official: nxt = (1 - s)·nxt + s·m) and make this a reference."""
        old, added = self.num_channels, new.shape[0]
        self.num_channels += added
        for ref in self.references:
            ref.grow_channels(self.num_channels)
        padded_new = torch.cat([new.new_zeros(old, new.shape[1]), new])
        if old:
            padded_old = torch.cat([labels, labels.new_zeros(added, labels.shape[1])])
            coverage = new.sum(0, keepdim=True)
            labels = (1 - coverage) * padded_old + coverage * padded_new
        else:
            labels = padded_new
        channels = torch.zeros(self.num_channels, dtype=torch.bool, device=new.device)
        # official: the first reference votes for the ids that survive down-sampling to the
        # feature grid; later references for every id their full-resolution mask holds
        channels[old:] = new.sum(1) > 0 if self.t == 0 else True
        self.references.append(ReferenceMemory(self.t, channels))
        return labels

    def _predict(self, ref: ReferenceMemory, query: torch.Tensor) -> torch.Tensor:
        """Soft labels [C, h*w] for the query, from the context of one reference."""
        cfg = self.config
        height, width = self.grid
        positions = height * width
        slots = cfg.context_indices(ref.frame, self.t)
        unique = list(dict.fromkeys(slots))
        slot_to_unique = torch.tensor([unique.index(s) for s in slots], device=query.device)
        keys = torch.cat([ref.features[u] for u in unique], dim=1)  # [D, U*hw]
        labels = torch.cat([ref.labels[u] for u in unique], dim=1)  # [C, U*hw]
        chunk = max(1, _CHUNK_BYTES // (len(slots) * positions * query.element_size()))
        out = torch.empty(labels.shape[0], positions, dtype=torch.float32, device=query.device)
        for start in range(0, positions, chunk):
            queries = torch.arange(start, min(start + chunk, positions), device=query.device)
            scores = _half_aware_matmul(query[:, queries].T, keys)
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


def _half_aware_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b in a's dtype. CPUs lack fast half GEMMs: there, accumulate in fp32 and round the
    result, which is what GPU half GEMMs (fp32 accumulation) compute, at fp32 speed."""
    if a.device.type == "cpu" and a.dtype in (torch.float16, torch.bfloat16):
        return (a.float() @ b.float()).to(a.dtype)
    return a @ b


def _one_hot_like(labels: torch.Tensor) -> torch.Tensor:
    hard = torch.zeros_like(labels)
    hard.scatter_(0, labels.argmax(0, keepdim=True), 1.0)
    return hard
