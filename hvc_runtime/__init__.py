"""hvc runtime: HVC encoders, label propagation, video/mask I/O and DAVIS evaluation.

from hvc_runtime import Segmenter, open_frames, read_mask
segmenter = Segmenter.from_checkpoint("hvc.safetensors", device="auto")
masks = list(segmenter.track(open_frames("video.mp4"), read_mask("mask.png")))
"""

from hvc_runtime.encoder.checkpoints import load_encoder
from hvc_runtime.io.frames import open_frames
from hvc_runtime.io.masks import read_mask, write_palette_png
from hvc_runtime.pipeline import segment_video
from hvc_runtime.propagation import DensePropagator, FastPropagator, PropagationConfig
from hvc_runtime.segmenter import Segmenter
from hvc_runtime.utils.errors import HvcError, HvcWarning, OptionError

__all__ = [
    "DensePropagator",
    "FastPropagator",
    "HvcError",
    "HvcWarning",
    "OptionError",
    "PropagationConfig",
    "Segmenter",
    "load_encoder",
    "open_frames",
    "read_mask",
    "segment_video",
    "write_palette_png",
]
