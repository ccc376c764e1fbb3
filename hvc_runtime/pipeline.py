"""One video through the whole chain: frames → segmenter → palette PNGs (+ overlay video).

The CLI commands are thin layers over `segment_video`; it is also the API for scripts.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hvc_runtime.errors import HvcError
from hvc_runtime.io.frames import FrameSource
from hvc_runtime.io.prefetch import prefetch
from hvc_runtime.io.writers import BackgroundWorker, MaskFolderWriter, OverlayVideoWriter
from hvc_runtime.segmenter import Segmenter

ProgressCallback = Callable[[int], None]


@dataclass
class SegmentationSummary:
    frames: int
    seconds: float
    masks_dir: Path
    overlay: Path | None
    object_ids: list[int]

    @property
    def seconds_per_frame(self) -> float:
        return self.seconds / max(self.frames, 1)


def segment_video(
    source: FrameSource,
    masks: Mapping[int, np.ndarray],
    segmenter: Segmenter,
    masks_dir: Path,
    overlay_path: Path | None = None,
    on_frame: ProgressCallback | None = None,
) -> SegmentationSummary:
    """Segment every frame of `source`; `masks` maps frame indices to id masks given there.

    The first frame must have a mask. Masks are written as DAVIS palette PNGs named after the
    frames; the folder and the overlay video appear only once the whole video has succeeded.
    """
    segmenter.reset()
    worker = BackgroundWorker()
    mask_writer = MaskFolderWriter(masks_dir, worker)
    video_writer = OverlayVideoWriter(overlay_path, source.fps, worker) if overlay_path else None
    start = time.perf_counter()
    count = 0
    try:
        pin = segmenter.device.type == "cuda"
        for frame in prefetch(source, pin_memory=pin):
            mask = masks.get(frame.index)
            if count == 0 and mask is None:
                raise HvcError(f"{source.path}: no mask for the first frame '{frame.name}'")
            ids = segmenter.step(frame.pinned if frame.pinned is not None else frame.rgb, mask)
            mask_writer.write(frame.name, ids)
            if video_writer is not None:
                video_writer.write(frame.rgb, ids)
            count += 1
            if on_frame is not None:
                on_frame(count)
        if count == 0:
            raise HvcError(f"{source.path}: no decodable frames")
        worker.close()
        mask_writer.commit()
        if video_writer is not None:
            video_writer.commit()
    except BaseException:
        with contextlib.suppress(BaseException):  # the first error is the one to report
            worker.close()
        mask_writer.abort()
        if video_writer is not None:
            video_writer.abort()
        raise
    return SegmentationSummary(
        frames=count,
        seconds=time.perf_counter() - start,
        masks_dir=masks_dir,
        overlay=overlay_path,
        object_ids=segmenter.object_ids,
    )
