"""What an export is asked to produce: one request object that every exporter reads."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

import numpy as np

from hvc_export.graph import ShapeRange
from hvc_runtime.utils.errors import OptionError


@dataclass
class ExportRequest:
    """Source checkpoint (None: the default encoder; a path, a published model name or a URL),
    format and destination, then options."""

    checkpoint: str | Path | None
    format: str
    out: Path
    _: KW_ONLY
    precision: str = "fp32"
    moco: str | Path | None = None
    shapes: ShapeRange = field(default_factory=ShapeRange)
    max_batch: int = 8
    parity_frames: list[np.ndarray] | None = None
    force: bool = False
    overwrite: bool = False
    workspace_bytes: int = 4 << 30
    timing_cache: Path | None = None
    version_compatible: bool = False

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise OptionError("max_batch", self.max_batch, "must be at least 1")
        if self.workspace_bytes < 1:
            raise OptionError("workspace_bytes", self.workspace_bytes, "must be positive")
