"""The exportable encoder and the shape rules of exported artifacts.

Every artifact takes float32 NCHW RGB frames in [0, 1] (normalisation inside the graph) and returns
L2-normalised stride-8 features; an fp16 artifact casts its input and computes in fp16.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import torch
from torch import nn

from hvc_runtime.encoder.network import InferenceEncoder
from hvc_runtime.encoder.precision import EXPORT_PRECISIONS, dtype_of
from hvc_runtime.utils.errors import HvcError


class ExportGraph(nn.Module):
    def __init__(self, encoder: InferenceEncoder, precision: str = "fp32") -> None:
        super().__init__()
        self.dtype = dtype_of(precision, EXPORT_PRECISIONS)
        self.encoder = copy.deepcopy(encoder).eval().to(self.dtype)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encoder(frames.to(self.dtype))


@dataclass(frozen=True)
class ShapeRange:
    """Frame sizes an artifact accepts: min ≤ opt ≤ max, each (height, width)."""

    min: tuple[int, int] = (64, 64)
    opt: tuple[int, int] = (480, 864)
    max: tuple[int, int] = (1088, 1920)

    def __post_init__(self) -> None:
        for low, high in ((self.min, self.opt), (self.opt, self.max)):
            if low[0] > high[0] or low[1] > high[1]:
                raise HvcError(f"shape range is empty: {self.describe()} (need min ≤ opt ≤ max)")
        if min(*self.min) < 8:
            raise HvcError(f"shape range: sides must be at least 8 pixels, got {self.describe()}")

    def require_multiple_of_8(self) -> None:
        """Engine profiles are built on multiples of 8 (the feature stride)."""
        bad = [s for s in (self.min, self.opt, self.max) if s[0] % 8 or s[1] % 8]
        if bad:
            raise HvcError(
                f"shape range: {bad[0][0]}x{bad[0][1]} is not a multiple of 8 (needed for TensorRT)"
            )

    def describe(self) -> str:
        return " / ".join(f"{h}x{w}" for h, w in (self.min, self.opt, self.max))

    def as_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def parse_shape(text: str) -> tuple[int, int]:
    """'480x864' → (480, 864)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise HvcError(f"shape {text!r}: expected HEIGHTxWIDTH, e.g. 480x864")
    return int(match[1]), int(match[2])
