"""Per-view colour changes that leave pixel positions alone (so the crop boxes stay valid).

Two crops of one frame share their colours exactly, so matching colour alone already wins the
objective; jittering brightness, contrast and saturation, or dropping colour, independently
per view takes that shortcut away. Off in the official recipe. Draws come from the sample's
generator, so a sample stays a function of (seed, epoch, position).
"""

from __future__ import annotations

import numpy as np
import torch

LUMA = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)  # ITU-R 601, as torchvision


def _grey(x: torch.Tensor) -> torch.Tensor:
    return (x * LUMA).sum(0, keepdim=True)


def recolour(
    view: torch.Tensor, rng: np.random.Generator, jitter: float, grayscale: float
) -> torch.Tensor:
    """A 3×H×W uint8 view with brightness, contrast and saturation scaled by factors drawn
    from [1 - jitter, 1 + jitter], then made grey with probability `grayscale`."""
    if not jitter and not grayscale:
        return view
    x = view.float()
    if jitter:
        brightness, contrast, saturation = rng.uniform(1 - jitter, 1 + jitter, size=3)
        x = (x * brightness).clamp_(0, 255)
        mean = _grey(x).mean()
        x = ((x - mean) * contrast + mean).clamp_(0, 255)
        grey = _grey(x)
        x = ((x - grey) * saturation + grey).clamp_(0, 255)
    if grayscale and rng.random() < grayscale:
        x = _grey(x).expand(3, -1, -1)
    return x.round().to(torch.uint8)
