"""The precisions features and affinities can run in, by their command-line names."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch

from hvc_runtime.utils.errors import OptionError

Precision = Literal["fp32", "fp16", "bf16"]
DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
EXPORT_PRECISIONS = ("fp32", "fp16")  # what exported artifacts are built in


def dtype_of(precision: str, allowed: Iterable[str] = DTYPES) -> torch.dtype:
    """The torch dtype of a precision name, refusing names outside `allowed`."""
    allowed = tuple(allowed)
    if precision not in allowed:
        raise OptionError("precision", precision, f"choose one of {', '.join(allowed)}")
    return DTYPES[precision]
