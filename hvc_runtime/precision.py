"""The precisions features and affinities can run in, by their command-line names."""

from __future__ import annotations

from typing import Literal

import torch

Precision = Literal["fp32", "fp16", "bf16"]
DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
