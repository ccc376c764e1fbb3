"""Ranking unique candidates that stand for several context slots.

A frame that fills m short-term slots of the reference's layout is scored once; its candidates
count m times in the joint top-k. Both fast kernels (PyTorch and Triton) rank that way.
"""

from __future__ import annotations

import torch


def expand_multiplicity(
    values: torch.Tensor, flat: torch.Tensor, multiplicity: torch.Tensor, k: int
):
    """Repeat each sorted candidate by its multiplicity and keep the first k ([hw, k'] each)."""
    ends = multiplicity.cumsum(1)  # candidate i covers ranks [ends[i-1], ends[i])
    rank = torch.arange(k, device=values.device).expand(values.shape[0], -1).contiguous()
    source = torch.searchsorted(ends, rank, right=True)
    beyond = source >= values.shape[1]
    source = source.clamp(max=values.shape[1] - 1)
    return values.gather(1, source).masked_fill(beyond, float("-inf")), flat.gather(1, source)
