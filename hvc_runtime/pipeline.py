"""One video through the whole chain: frames → segmenter → palette PNGs (+ overlay video).

The CLI commands are thin layers over `segment_video`; it is also the API for scripts.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hvc_runtime.io.frames import Frame, FrameSource
from hvc_runtime.io.prefetch import prefetch
from hvc_runtime.io.writers import BackgroundWorker, MaskFolderWriter, OverlayVideoWriter
from hvc_runtime.segmenter import Segmenter
from hvc_runtime.utils.errors import HvcError, HvcWarning, listing
from hvc_runtime.utils.interrupts import Interrupted

ProgressCallback = Callable[[int], None]
MASK_WRITER_THREADS = min(4, os.cpu_count() or 1)


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
    *,
    masks_dir: Path,
    overlay: Path | None = None,
    on_frame: ProgressCallback | None = None,
    frames: Iterator[Frame] | None = None,
) -> SegmentationSummary:
    """Segment every frame of `source`; `masks` maps frame indices to id masks given there.

    The first frame must have a mask. Masks are written as DAVIS palette PNGs named after the
    frames (by a pool of threads), the overlay video on its own thread; the folder and the
    video appear only once the whole video has succeeded. An interruption (SIGINT, SIGTERM)
    leaves nothing and says at which frame it came. `frames` are the source's frames when
    their decoding already started (a job list reads the next video ahead, `preload`); by
    default they are decoded here, a few ahead on a thread.
    """
    segmenter.reset()
    mask_worker = BackgroundWorker(threads=MASK_WRITER_THREADS)
    video_worker = BackgroundWorker()
    mask_writer = MaskFolderWriter(masks_dir, mask_worker)
    video_writer = OverlayVideoWriter(overlay, source.fps, video_worker) if overlay else None
    start = time.perf_counter()
    count = 0
    if frames is None:
        frames = prefetch(source, segmenter.device, gpu_decode=segmenter.gpu_decode)
    try:
        for frame in frames:
            mask = masks.get(frame.index)
            if count == 0 and mask is None:
                raise HvcError(f"{source.path}: no mask for the first frame '{frame.name}'")
            ids = segmenter.step(frame.input(), mask)
            mask_writer.write(frame.name, ids)
            if video_writer is not None:
                video_writer.write(frame.host_rgb, ids)  # downloaded on the writer's thread
            count += 1
            if on_frame is not None:
                on_frame(count)
        if count == 0:
            raise HvcError(f"{source.path}: no decodable frames")
        _warn_unused(source, masks, count)
        mask_worker.close()
        video_worker.close()
        mask_writer.commit()
        if video_writer is not None:
            video_writer.commit()
    except BaseException as exc:
        for worker in (mask_worker, video_worker):
            with contextlib.suppress(BaseException):  # the first error is the one to report
                worker.close()
        mask_writer.abort()
        if video_writer is not None:
            video_writer.abort()
        if isinstance(exc, KeyboardInterrupt):
            stop = exc if isinstance(exc, Interrupted) else Interrupted()
            total = f"/{source.length}" if source.length else ""  # never a guessed count
            raise stop.with_detail(f"at frame {count + 1}{total}; nothing written") from None
        raise
    finally:
        close = getattr(frames, "close", None)
        if close is not None:  # stops the reader thread now, not whenever `frames` is collected
            close()
    return SegmentationSummary(
        frames=count,
        seconds=time.perf_counter() - start,
        masks_dir=masks_dir,
        overlay=overlay,
        object_ids=segmenter.object_ids,
    )


def _warn_unused(source: FrameSource, masks: Mapping[int, np.ndarray], count: int) -> None:
    """Masks for frames past where decoding stopped (a video kept with `allow_partial`): the
    objects they add are nowhere in the result, which must be said."""
    unused = sorted(k for k in masks if k >= count)
    if unused:
        warnings.warn(
            f"{source.path}: decoding ended after {count} frames; the masks given for frames "
            f"{listing([f'{k:05d}' for k in unused])} were not used",
            HvcWarning,
            stacklevel=3,
        )
