"""Output writers that run on a background thread, so segmentation never waits on disk or codecs.

Outputs are staged under a temporary name and renamed into place only when complete, so a run
that fails leaves nothing that looks finished. A write error surfaces in the caller's thread.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from hvc_runtime.io.masks import davis_palette, write_palette_png
from hvc_runtime.utils.errors import HvcError

_STOP = object()


class BackgroundWorker:
    """Runs submitted jobs on `threads` threads (in order when there is one); re-raises the
    first failure on submit/close. PNG and video encoders release the GIL while they work."""

    def __init__(self, threads: int = 1, max_pending: int = 32) -> None:
        self._jobs: queue.Queue = queue.Queue(max_pending)
        self._error: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._run, name=f"hvc-writer-{n}", daemon=True)
            for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not _STOP:
            if self._error is None:
                try:
                    job()
                except BaseException as exc:  # handed to the submitting thread
                    self._error = self._error or exc

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, job: Callable[[], None]) -> None:
        self._raise_pending()
        self._jobs.put(job)

    def close(self) -> None:
        """Wait for all jobs; raise the first error any of them hit."""
        for _ in self._threads:
            self._jobs.put(_STOP)
        for thread in self._threads:
            thread.join()
        self._raise_pending()


def _staging(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


class MaskFolderWriter:
    """Palette PNGs `<name>.png` written into `folder`, which appears only on `commit()`."""

    def __init__(self, folder: Path, worker: BackgroundWorker) -> None:
        self.folder = Path(folder)
        self.staging = _staging(self.folder)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        self.worker = worker
        self.count = 0

    def write(self, name: str, ids: np.ndarray) -> None:
        target = self.staging / f"{name}.png"
        self.worker.submit(lambda: _write_mask(target, ids))
        self.count += 1

    def commit(self) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.staging.rename(self.folder)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def _write_mask(path: Path, ids: np.ndarray) -> None:
    try:
        write_palette_png(path, ids)
    except OSError as exc:  # a full disk, a vanished folder: one line, nothing kept
        raise HvcError(f"{path}: cannot write the mask ({exc.strerror or exc})") from exc


def overlay(rgb: np.ndarray, ids: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend object colours (DAVIS palette) over the frame; background pixels stay as they are."""
    colours = np.asarray(davis_palette(), dtype=np.float32).reshape(256, 3)
    blended = rgb.astype(np.float32)
    objects = ids > 0
    blended[objects] = (1 - alpha) * blended[objects] + alpha * colours[ids[objects]]
    return blended.astype(np.uint8)


class OverlayVideoWriter:
    """An overlay video: H.264 through PyAV when it is installed, else OpenCV's mp4v."""

    def __init__(self, path: Path, fps: float, worker: BackgroundWorker) -> None:
        self.path = Path(path)
        self.staging = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.fps = fps
        self.worker = worker
        self._encoder: _PyAvEncoder | _OpenCvEncoder | None = None
        self.codec = "h264" if _pyav_has_h264() else "mp4v"

    def write(self, rgb: np.ndarray | Callable[[], np.ndarray], ids: np.ndarray) -> None:
        """Queue a frame; `rgb` may be a callable giving the pixels (e.g. `Frame.host_rgb` of
        a frame decoded on the GPU), so that the download happens on the writer's thread and
        the segmenting loop never waits for it."""
        self.worker.submit(lambda: self._write(rgb() if callable(rgb) else rgb, ids))

    def _write(self, rgb: np.ndarray, ids: np.ndarray) -> None:
        frame = overlay(rgb, ids)
        with self._errors():
            if self._encoder is None:
                make = _PyAvEncoder if self.codec == "h264" else _OpenCvEncoder
                self._encoder = make(self.staging, self.fps, frame.shape[1], frame.shape[0])
            self._encoder.write(frame)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Codec and disk failures (PyAV raises its own types, some of them EOFError) as one
        line naming the video."""
        try:
            yield
        except Exception as exc:
            raise HvcError(f"{self.path}: cannot write the overlay video ({exc})") from exc

    def commit(self) -> None:
        """Call after the worker has drained: finish the file and move it into place."""
        if self._encoder is not None:
            with self._errors():
                self._encoder.close()
            self.staging.replace(self.path)

    def abort(self) -> None:
        if self._encoder is not None:
            with contextlib.suppress(Exception):  # the error being reported came first
                self._encoder.close()
        self.staging.unlink(missing_ok=True)


def _pyav_has_h264() -> bool:
    try:
        import av
    except ImportError:
        return False
    try:
        av.codec.Codec("libx264", "w")
    except Exception:
        return False
    return True


class _PyAvEncoder:
    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        import av

        self.av = av
        self.container = av.open(str(path), mode="w", format="mp4")
        self.stream = self.container.add_stream(
            "libx264", rate=Fraction(fps).limit_denominator(1001)
        )
        self.stream.width, self.stream.height = width - width % 2, height - height % 2
        self.stream.pix_fmt = "yuv420p"

    def write(self, rgb: np.ndarray) -> None:
        even = np.ascontiguousarray(rgb[: self.stream.height, : self.stream.width])
        frame = self.av.VideoFrame.from_ndarray(even, format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


class _OpenCvEncoder:
    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        fourcc = cv2.VideoWriter_fourcc(*"mp4v")
        self.writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
        if not self.writer.isOpened():
            raise OSError(f"{path}: OpenCV cannot open an mp4v video writer")

    def write(self, rgb: np.ndarray) -> None:
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self.writer.release()
