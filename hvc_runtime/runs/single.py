"""One video into one result folder: what `hvc-run VIDEO MASK` does, and each job of a list.

Everything that can be checked cheaply (the video opens, the masks fit, the folder may be
written) is checked when the run is planned, before a model is loaded; `run` then segments and
commits the folder whole, its summary saying `"complete": true`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from hvc_runtime.io.frames import Frame, FrameSource, open_frames
from hvc_runtime.io.given_masks import read_given_masks
from hvc_runtime.io.results import SUMMARY, TOOL, ResultFolder
from hvc_runtime.pipeline import ProgressCallback, SegmentationSummary, segment_video
from hvc_runtime.segmenter import Segmenter

RUN_OUTPUTS = ("masks", "overlay.mp4")


class VideoRun:
    """`video` segmented from `mask` (a first-frame mask file or a folder of masks named after
    frames) into the result folder `out`; `protected` are further inputs (checkpoints) that
    the result must never replace."""

    def __init__(
        self,
        video: Path,
        mask: Path,
        out: Path,
        *,
        overlay: bool = True,
        overwrite: bool = False,
        resize_mask: bool = False,
        allow_partial: bool = False,
        protected: Iterable[Path] = (),
    ) -> None:
        self.video, self.mask, self.out, self.overlay = Path(video), Path(mask), Path(out), overlay
        self.source: FrameSource = open_frames(self.video, allow_partial=allow_partial)
        self.masks = read_given_masks(self.mask, self.source, resize_mask=resize_mask)
        inputs = [self.video, self.mask, *protected]
        self.result = ResultFolder(self.out, RUN_OUTPUTS, overwrite=overwrite, inputs=inputs)

    def run(
        self,
        segmenter: Segmenter,
        *,
        frames: Iterator[Frame] | None = None,
        on_frame: ProgressCallback | None = None,
    ) -> SegmentationSummary:
        """Segment and commit the folder; a failure or an interruption leaves no result.
        `frames` are the source's frames already being decoded (see `segment_video`)."""
        try:
            staging = self.result.open()
            summary = segment_video(
                self.source,
                self.masks,
                segmenter,
                masks_dir=staging / "masks",
                overlay=staging / "overlay.mp4" if self.overlay else None,
                on_frame=on_frame,
                frames=frames,
            )
            self.result.commit(self._summary_payload(summary, segmenter))
        except BaseException:
            self.result.abort()
            raise
        return summary

    def _summary_payload(self, summary: SegmentationSummary, segmenter: Segmenter) -> dict:
        # absolute paths: the summary is read later, from wherever, not from the working directory
        video, mask, out = self.video.resolve(), self.mask.resolve(), self.out.resolve()
        return {
            "complete": True,
            "video": str(video),
            "mask": str(mask),
            "frames": summary.frames,
            "seconds": summary.seconds,
            "object_ids": summary.object_ids,
            "masks": str(out / "masks"),
            "overlay": str(out / "overlay.mp4") if self.overlay else None,
            "device": str(segmenter.device),
            "weights": {role: w.record() for role, w in segmenter.source.weights.items()},
            **run_settings(segmenter, self.overlay),
        }


def run_settings(segmenter: Segmenter, overlay: bool) -> dict:
    """How a result is made besides its inputs, as its summary records it: a job list redoes a
    complete result that was made otherwise (another encoder, precision, size, propagation)."""
    return {
        "encoder": segmenter.source.description,
        "precision": segmenter.precision,
        "mode": segmenter.mode,
        "size": segmenter.short_side,
        "propagation": segmenter.propagator.config.__dict__,
        "with_overlay": overlay,
    }


def is_complete(out: Path, video: Path, mask: Path, settings: dict | None = None) -> bool:
    """Whether `out` holds a complete hvc-run result of `video` from `mask`: its summary is
    hvc-run's, says complete, names these inputs and, where given, these `settings`
    (`run_settings`); a changed job is redone."""
    try:
        summary = json.loads((Path(out) / SUMMARY).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(summary, dict)
        and summary.get("tool") == TOOL
        and summary.get("complete") is True
        and all(
            isinstance(summary.get(key), str) and Path(summary[key]).resolve() == path.resolve()
            for key, path in (("video", Path(video)), ("mask", Path(mask)))
        )
        and all(summary.get(key) == value for key, value in _as_json(settings or {}).items())
    )


def _as_json(values: dict) -> dict:
    """`values` as they read back from a summary (tuples as lists, and so on)."""
    return json.loads(json.dumps(values))
