"""Label-propagation settings; the defaults are the official ones for every dataset."""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field

import torch

from hvc_runtime.utils.errors import HvcWarning, OptionError

MAX_CONTEXT = 1000
MAX_TOPK = 100
MIN_TEMPERATURE = 1e-4
MAX_USEFUL_TEMPERATURE = 1.0


def _setting(default: object, help: str) -> object:
    """A field whose help text the command lines show (`metadata["help"]`)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class PropagationConfig:
    """How labels travel from context frames to the current frame (see each field's help)."""

    context_size: int = _setting(
        50, "Short-term context: previous frames used besides the reference frame."
    )
    topk: int = _setting(15, "Top-k candidates per position, jointly over all context frames.")
    temperature: float = _setting(0.1, "Softmax temperature on the top-k cosine similarities.")
    radius: float = _setting(
        12.0,
        "Window radius (feature cells, Euclidean, strict) for short-term frames; the long-term "
        "reference frame is searched everywhere.",
    )
    pad_context: bool = _setting(
        True, "Official padding of the context with copies of the reference frame (51 slots)."
    )
    soft_labels: bool = _setting(
        True, "Keep soft label maps in memory (official); off stores one-hot maps."
    )
    fp32_scores: bool = _setting(
        True,
        "Rank fp16/bf16 features by fp32 scores. Off rounds score/temperature to the feature "
        "precision as the official fp16 autocast does: it reproduces official fp16 masks, "
        "including their mislabelling of textureless video.",
    )

    def __post_init__(self) -> None:
        for name in ("context_size", "topk"):  # the API takes any value; a 2.5 would crash later
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise OptionError(name, value, "must be an integer")
            object.__setattr__(self, name, int(value))  # a NumPy integer too, as Python's
        for name in ("temperature", "radius"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise OptionError(name, value, "must be a finite number")
        if not 0 <= self.context_size <= MAX_CONTEXT:
            raise OptionError(
                "context_size",
                self.context_size,
                f"must be 0..{MAX_CONTEXT} (every context frame keeps its features in memory; "
                "the official value is 20 or 50)",
            )
        if not 1 <= self.topk <= MAX_TOPK:
            raise OptionError(
                "topk",
                self.topk,
                f"must be 1..{MAX_TOPK} (labels are a vote of the k best matches; far beyond "
                "the official 5-20 unrelated positions outvote the object: at 1000 a test "
                "clip kept 2% of it, at 5000 every frame after the first was background)",
            )
        if self.temperature < MIN_TEMPERATURE:
            raise OptionError(
                "temperature",
                self.temperature,
                f"must be >= {MIN_TEMPERATURE} (below it similarity/temperature overflows half "
                "precision, and the softmax is already a hard arg-max)",
            )
        if self.radius <= 0:
            raise OptionError("radius", self.radius, "must be > 0")
        if self.temperature > MAX_USEFUL_TEMPERATURE:
            warnings.warn(
                f"temperature {self.temperature}: above {MAX_USEFUL_TEMPERATURE} the top-k "
                "matches (cosines in [-1, 1]) are weighted almost equally, so labels blur; the "
                "official value is 0.1",
                HvcWarning,
                stacklevel=3,
            )

    def score_dtype(self, features: torch.dtype) -> torch.dtype:
        """The dtype scores are ranked in for features of `features` dtype."""
        return torch.float32 if self.fp32_scores else features

    def context_indices(self, reference: int, t: int) -> list[int]:
        """Frame indices of the context for frame t: long-term reference, then short-term slots."""
        start = t - self.context_size
        if self.pad_context:
            return [reference] + [max(tau, reference) for tau in range(start, t)]
        return [reference, *range(max(start, reference), t)]
