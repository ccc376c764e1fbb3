"""Decode ahead on a background thread, so the encoder never waits on the video decoder.

OpenCV and PIL release the GIL while decoding, so a reader thread overlaps decoding with the
GPU (or the CPU's other core). For CUDA targets the thread also copies each frame into pinned
host memory, which lets the upload run asynchronously (`non_blocking=True`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import replace

import torch

from hvc_runtime.io.frames import Frame, FrameSource

_END = object()


def prefetch(source: FrameSource, depth: int = 4, pin_memory: bool = False) -> Iterator[Frame]:
    """Frames of `source` in order, decoded up to `depth` frames ahead.

    With `pin_memory`, each frame also carries its pixels in pinned memory (`Frame.pinned`). Decoding
    errors are raised in the consumer at the frame where they happened; closing the iterator
    early stops the reader.
    """
    frames: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                frames.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for frame in source:
                if pin_memory:
                    frame = replace(frame, pinned=torch.from_numpy(frame.rgb).pin_memory())
                if not put(frame):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer
            put(exc)

    reader = threading.Thread(target=read, name="hvc-decoder", daemon=True)
    reader.start()
    try:
        while (item := frames.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()
