"""Label-propagation settings; the defaults are the official ones for every dataset."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PropagationConfig:
    """How labels travel from context frames to the current frame.

    context_size: short-term context, the previous frames used besides the reference frame.
    topk: candidates kept per query position, jointly over all context frames.
    temperature: softmax temperature on the top-k cosine similarities.
    radius: spatial window (feature cells, Euclidean, strict) for short-term frames only; the
        long-term copy of the reference frame is searched everywhere.
    pad_context: the official code fills short-term slots that precede the reference frame with
        copies of it (51 slots from the first frame on); False uses each existing frame once.
    soft_labels: store propagated soft label maps as context (official); False stores one-hot maps.
    """

    context_size: int = 50
    topk: int = 15
    temperature: float = 0.1
    radius: float = 12.0
    pad_context: bool = True
    soft_labels: bool = True

    def __post_init__(self) -> None:
        if self.context_size < 0:
            raise ValueError(f"context_size must be >= 0, got {self.context_size}")
        if self.topk < 1:
            raise ValueError(f"topk must be >= 1, got {self.topk}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.radius <= 0:
            raise ValueError(f"radius must be > 0, got {self.radius}")

    def context_indices(self, reference: int, t: int) -> list[int]:
        """Frame indices of the context for frame t: long-term reference, then short-term slots."""
        start = t - self.context_size
        if self.pad_context:
            return [reference] + [max(tau, reference) for tau in range(start, t)]
        return [reference, *range(max(start, reference), t)]
