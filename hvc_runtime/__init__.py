"""hvc runtime: HVC encoders, label propagation, video/mask I/O and DAVIS evaluation."""

from hvc_runtime.checkpoints import load_encoder
from hvc_runtime.errors import HvcError
from hvc_runtime.pipeline import segment_video
from hvc_runtime.propagation import FastPropagator, PropagationConfig, ReferencePropagator
from hvc_runtime.segmenter import Segmenter

__all__ = [
    "FastPropagator",
    "HvcError",
    "PropagationConfig",
    "ReferencePropagator",
    "Segmenter",
    "load_encoder",
    "segment_video",
]
