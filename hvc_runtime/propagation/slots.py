"""Context features in one padded, channel-last tensor, so every window is a strided view.

`SlotStore` keeps the features of the context frames in a tensor of shape [Hk, Wk, S, D]:
the feature grid zero-padded by the window margin (and to whole tiles), one slot per unique
frame, shared by the contexts of every reference frame (`SlotMemory`). The keys a query tile
sees over every frame are then rows of one strided view, scored by a single batched matrix
product with no copy. Slots are reused as frames leave the context, and the tensor grows
geometrically up to one slot per context frame, so early frames score only about the slots in
use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hvc_runtime.propagation.memory import ReferenceMemory
from hvc_runtime.propagation.window import TileWindows


@dataclass
class SlotStore:
    """The slot tensor all references of a video share: a frame is written once, however many
    references hold it in their context, and its slot is reused once none does."""

    windows: TileWindows
    capacity: int  # frames that can be held at once: one per context frame
    features: torch.Tensor | None = None  # [Hk, Wk, S, D], S slots allocated so far
    slot_of: dict[int, int] = field(default_factory=dict)  # frame -> its slot
    holders: dict[int, int] = field(default_factory=dict)  # frame -> references holding it

    def hold(self, t: int, features: torch.Tensor) -> None:
        if t in self.slot_of:
            self.holders[t] += 1
            return
        slot = self._free_slot(features)
        w, m = self.windows, self.windows.margin
        grid = features.T.reshape(w.height, w.width, features.shape[0])
        self.features[m : m + w.height, m : m + w.width, slot] = grid
        self.slot_of[t], self.holders[t] = slot, 1

    def release(self, t: int) -> None:
        self.holders[t] -= 1
        if not self.holders[t]:
            del self.holders[t], self.slot_of[t]

    def _free_slot(self, features: torch.Tensor) -> int:
        allocated = 0 if self.features is None else self.features.shape[2]
        used = set(self.slot_of.values())
        free = [s for s in range(allocated) if s not in used]
        if free:
            return free[0]
        grown = min(self.capacity, max(1, 2 * allocated))
        if grown <= allocated:
            raise RuntimeError("context memory is full: evict before storing")
        key_h, key_w = self.windows.padded_key_shape
        grown_features = features.new_zeros(key_h, key_w, grown, features.shape[0])
        if self.features is not None:
            grown_features[:, :, :allocated] = self.features
        self.features = grown_features
        return allocated


@dataclass
class SlotMemory(ReferenceMemory):
    """A `ReferenceMemory` whose features live in the shared `SlotStore`; `features` keeps only
    the reference frame itself, which the long-term slot scores over the whole grid. A frame is
    held while it can fill this reference's short-term slots, the reference frame included."""

    store: SlotStore | None = None
    held: set[int] = field(default_factory=set)  # the frames this reference holds in `store`

    def held_slots(self) -> dict[int, int]:
        """This reference's frames and their slots (other references' slots are not its own)."""
        return {t: self.store.slot_of[t] for t in self.held}

    def keep(self, t: int, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.labels[t] = labels
        if t == self.frame:
            self.features[t] = features
        self.store.hold(t, features)
        self.held.add(t)

    def evict(self, t: int, context_size: int) -> None:
        super().evict(t, context_size)
        if t - self.frame > context_size:  # the reference frame only fills the long-term slot
            self._release(self.frame)

    def _forget(self, tau: int) -> None:
        del self.labels[tau]
        self.features.pop(tau, None)
        self._release(tau)

    def _release(self, tau: int) -> None:
        if tau in self.held:
            self.held.discard(tau)
            self.store.release(tau)
