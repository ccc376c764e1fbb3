"""Per-reference context memory: the features and label maps of recent frames, bounded in size."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ReferenceMemory:
    """Context of one reference frame t0 (frame 0, or a frame where new objects appear).

    `channels` are the label channels this reference is allowed to vote for: all ids present at
    t0 (background included for frame 0). Frames older than the context are dropped, except t0.
    """

    frame: int
    channels: torch.Tensor  # bool [C]
    features: dict[int, torch.Tensor] = field(default_factory=dict)  # t -> [D, h*w]
    labels: dict[int, torch.Tensor] = field(default_factory=dict)  # t -> [C, h*w]

    def keep(self, t: int, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.features[t] = features
        self.labels[t] = labels

    def evict(self, t: int, context_size: int) -> None:
        """Forget frames that can no longer enter the context of frame t or later."""
        for tau in [tau for tau in self.labels if t - tau > context_size and tau != self.frame]:
            self._forget(tau)

    def _forget(self, tau: int) -> None:
        del self.features[tau], self.labels[tau]

    def grow_channels(self, total: int) -> None:
        """Zero-pad stored label maps when new object ids appear."""
        grow = total - self.channels.numel()
        if grow <= 0:
            return
        self.channels = torch.cat([self.channels, self.channels.new_zeros(grow)])
        for tau, lab in self.labels.items():
            self.labels[tau] = torch.cat([lab, lab.new_zeros(grow, lab.shape[1])])
