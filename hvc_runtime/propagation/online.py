"""The online bookkeeping every propagator shares: references, memory, objects that appear late.

Subclasses only decide how one reference's context votes for the query frame (`_predict`); the
reference and the fast propagators therefore cannot drift apart in anything else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from hvc_runtime.propagation.config import PropagationConfig
from hvc_runtime.propagation.memory import ReferenceMemory


class OnlinePropagator(ABC):
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
        for ref in self.references:  # every reference first, so shared storage is freed first
            ref.evict(self.t + 1, self.config.context_size)
        for ref in self.references:
            if self.config.context_size > 0 or self.t == ref.frame:  # else never read again
                ref.keep(self.t, query, stored)
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
        self.references.append(self._new_memory(self.t, channels))
        return labels

    def _new_memory(self, frame: int, channels: torch.Tensor) -> ReferenceMemory:
        """The context store of a new reference frame; propagators may lay it out their way."""
        return ReferenceMemory(frame, channels)

    @abstractmethod
    def _predict(self, ref: ReferenceMemory, query: torch.Tensor) -> torch.Tensor:
        """Soft labels [C, h*w] for the query ([D, h*w]), from the context of one reference."""


def _one_hot_like(labels: torch.Tensor) -> torch.Tensor:
    hard = torch.zeros_like(labels)
    hard.scatter_(0, labels.argmax(0, keepdim=True), 1.0)
    return hard
