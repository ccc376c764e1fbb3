"""Decode ahead on a background thread, so the encoder never waits on the video decoder.

OpenCV, PIL and file reads release the GIL, so a reader thread overlaps decoding with the GPU
(or the CPU's other core). For CUDA targets the thread also copies each frame into pinned host
memory, which lets the upload run asynchronously (`non_blocking=True`); folders of JPEG frames
are instead read as bytes on the thread and decoded on the GPU in batches (nvJPEG through
`torchvision.io.decode_jpeg`), so the pixels never cross the bus as raw RGB.
"""

from __future__ import annotations

import queue
import threading
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch
from torchvision.io import ImageReadMode, decode_jpeg, read_file

from hvc_runtime.io.frames import Frame, FrameSource, ImageFolderSource
from hvc_runtime.utils.errors import HvcError

_END = object()
JPEG_SUFFIXES = {".jpg", ".jpeg"}
JPEG_BATCH = 8


def prefetch(
    source: FrameSource,
    device: torch.device | None = None,
    depth: int = 4,
    *,
    gpu_decode: bool = True,
) -> Iterator[Frame]:
    """Frames of `source` in order, decoded up to `depth` frames ahead, ready for `device`.

    For a CUDA `device` each frame carries its pixels as a tensor (`Frame.pixels`): on the GPU
    for JPEG folders (unless `gpu_decode` is off), else in pinned memory. Decoding errors are
    raised in the consumer at the
    frame where they happened; closing the iterator early stops the reader."""
    cuda = device is not None and device.type == "cuda"
    if cuda and gpu_decode and is_jpeg_folder(source):
        yield from decode_jpeg_batches(source, device, depth)
        return
    pin = cuda and torch.cuda.is_available()
    frames = (
        replace(frame, pixels=torch.from_numpy(frame.rgb).pin_memory()) if pin else frame
        for frame in source
    )
    yield from read_ahead(frames, depth)


def read_ahead(items: Iterable, depth: int) -> Iterator:
    """`items` produced on a background thread, up to `depth` ahead; errors re-raised here."""
    return iter(ReadAhead(items, depth))


class ReadAhead:
    """`items` produced on a background thread from now on, up to `depth` ahead, whether or not
    anyone iterates yet (a job list starts the next video while this one is segmented).
    Errors are re-raised in the consumer; `close` (or closing the iteration) stops the thread."""

    def __init__(self, items: Iterable, depth: int) -> None:
        self._pending: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._reader = threading.Thread(
            target=self._produce, args=(items,), name="hvc-decoder", daemon=True
        )
        self._reader.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._pending.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, items: Iterable) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer
            self._put(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator stops its own reader here, on this thread
                close()

    def __iter__(self) -> Iterator:
        try:
            while (item := self._pending.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        self._reader.join()


def preload(
    source: FrameSource, device: torch.device | None, *, gpu_decode: bool = True, depth: int = 8
) -> ReadAhead:
    """Start decoding `source` now, as `prefetch` would for `device`, holding at most `depth`
    frames until they are asked for: memory stays bounded however long the video."""
    return ReadAhead(prefetch(source, device, gpu_decode=gpu_decode), depth)


def is_jpeg_folder(source: FrameSource) -> bool:
    return isinstance(source, ImageFolderSource) and all(
        f.suffix.lower() in JPEG_SUFFIXES for f in source.files
    )


@contextmanager
def quiet_torchvision_io() -> Iterator[None]:
    """torchvision 0.29 deprecates its image codecs for TorchCodec on every call; they still
    work, and a user running a video has nothing to act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision")
        yield


def decode_jpeg_batches(
    source: ImageFolderSource, device: torch.device, depth: int = 4, batch: int = JPEG_BATCH
) -> Iterator[Frame]:
    """JPEG files read on a thread, decoded `batch` at a time on `device` (H×W×3 uint8)."""

    def read_batches() -> Iterator[list[tuple[int, torch.Tensor]]]:
        files = list(enumerate(source.files))
        for start in range(0, len(files), batch):
            with quiet_torchvision_io():
                yield [(i, read_file(str(path))) for i, path in files[start : start + batch]]

    for chunk in read_ahead(read_batches(), depth):
        images = _decode_on(device, [data for _, data in chunk])
        if images is None:  # nvJPEG rejected one of them: these frames on the CPU instead
            names = ", ".join(source.files[i].name for i, _ in chunk)
            images = [_decode_on_cpu(data, source.path, names).to(device) for _, data in chunk]
        for (index, _), image in zip(chunk, images, strict=True):
            file = source.files[index]
            if tuple(image.shape[1:]) != (source.height, source.width):
                raise HvcError(
                    f"{file}: frame size {image.shape[2]}x{image.shape[1]} differs from the first "
                    f"frame's {source.width}x{source.height}"
                )
            yield Frame(index, file.stem, None, image.permute(1, 2, 0))


def _decode_on(device: torch.device, data: list[torch.Tensor]) -> list[torch.Tensor] | None:
    """JPEG bytes decoded on the GPU, or None where nvJPEG rejects them (some encoders' files
    decode on the CPU only). The device is synchronised first: torchvision's batched decode
    can race with work still queued on it (seen on H100s)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    try:
        with quiet_torchvision_io():
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return None


def _decode_on_cpu(data: torch.Tensor, folder, names: str) -> torch.Tensor:
    try:
        with quiet_torchvision_io():
            return decode_jpeg(data, mode=ImageReadMode.RGB)
    except RuntimeError as exc:
        raise HvcError(f"{folder}: cannot decode JPEG frames {names} ({exc})") from exc
