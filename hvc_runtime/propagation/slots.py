"""Context features in one padded, channel-last tensor, so every window is a strided view.

`SlotMemory` keeps the features of a reference's context frames in a tensor of shape
[Hk, Wk, slots, D]: the feature grid zero-padded by the window margin (and to whole tiles), one
slot per unique frame. The keys a query tile sees over every frame are then rows of one
strided view, scored by a single batched matrix product with no copy. Slots are reused as frames
leave the context, and the tensor grows geometrically up to one slot per context frame, so
early frames score only about the slots in use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hvc_runtime.propagation.memory import ReferenceMemory
from hvc_runtime.propagation.window import TileWindows


@dataclass
class SlotMemory(ReferenceMemory):
    """A `ReferenceMemory` whose features live in slots; `features` keeps only the reference
    frame itself, which the long-term slot scores over the whole grid. A frame holds a slot
    while it can fill short-term slots, the reference frame included."""

    windows: TileWindows | None = None
    capacity: int = 1
    slots: torch.Tensor | None = None  # [Hk, Wk, allocated, D]
    slot_of: dict[int, int] = field(default_factory=dict)

    def store(self, t: int, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.labels[t] = labels
        if t == self.frame:
            self.features[t] = features
        slot = self._free_slot(features)
        self.slot_of[t] = slot
        w = self.windows
        dim = features.shape[0]
        grid = features.T.reshape(w.height, w.width, dim)
        m = w.margin
        self.slots[m : m + w.height, m : m + w.width, slot] = grid

    def evict(self, t: int, context_size: int) -> None:
        super().evict(t, context_size)
        if t - self.frame > context_size:  # the reference frame only fills the long-term slot
            self.slot_of.pop(self.frame, None)

    def _forget(self, tau: int) -> None:
        del self.labels[tau]
        self.features.pop(tau, None)
        del self.slot_of[tau]

    def _free_slot(self, features: torch.Tensor) -> int:
        allocated = 0 if self.slots is None else self.slots.shape[2]
        used = set(self.slot_of.values())
        free = [s for s in range(allocated) if s not in used]
        if free:
            return free[0]
        grown = min(self.capacity, max(1, 2 * allocated))
        if grown <= allocated:
            raise RuntimeError("context memory is full: evict before storing")
        key_h, key_w = self.windows.padded_key_shape
        slots = features.new_zeros(key_h, key_w, grown, features.shape[0])
        if self.slots is not None:
            slots[:, :, :allocated] = self.slots
        self.slots = slots
        return allocated
