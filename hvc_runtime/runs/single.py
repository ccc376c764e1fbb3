"""One video into one result folder: what `hvc-run VIDEO MASK` does, and each job of a list.

Everything that can be checked cheaply (the video opens, the masks fit, the folder may be
written) is checked when the run is planned, before a model is loaded; `run` then segments and
commits the folder whole, its summary saying `"complete": true` and recording what the result
was made from (inputs, settings), which is what `is_complete` checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from hvc_runtime.io.fingerprints import changed_input, input_fingerprints
from hvc_runtime.io.frames import Frame, FrameSource, open_frames
from hvc_runtime.io.given_masks import read_given_masks
from hvc_runtime.io.results import SUMMARY, TOOL, ResultFolder
from hvc_runtime.pipeline import ProgressCallback, SegmentationSummary, segment_video
from hvc_runtime.segmenter import Segmenter

RUN_OUTPUTS = ("masks", "overlay.mp4")
NO_RESULT = "no complete result"  # what `result_problem` says of a folder without one


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
        self.inputs = input_fingerprints(self.video, self.mask)  # as read: before any decoding
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

    def release(self) -> None:
        """Give the result folder up without running: its lock released, nothing written."""
        self.result.abort()

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
            "inputs": self.inputs,
            **run_settings(segmenter, self.overlay),
        }


def run_settings(segmenter: Segmenter, overlay: bool) -> dict:
    """How a result is made besides its inputs, as its summary records it: a job list redoes a
    complete result that was made otherwise (another encoder, precision, size, propagation,
    or other weights under the same checkpoint name)."""
    return {
        "encoder": segmenter.source.description,
        "precision": segmenter.precision,
        "mode": segmenter.mode,
        "size": segmenter.short_side,
        "propagation": segmenter.propagator.config.__dict__,
        "with_overlay": overlay,
        "weights": {role: w.record() for role, w in segmenter.source.weights.items()},
        "weight_files": segmenter.weight_files,
    }


def is_complete(out: Path, video: Path, mask: Path, settings: dict) -> bool:
    """Whether `out` holds a complete hvc-run result of `video` from `mask` made with `settings`
    (`run_settings`) from inputs as they are now: the one test of "done" (see
    `result_problem`)."""
    return result_problem(out, video, mask, settings) is None


def result_problem(out: Path, video: Path, mask: Path, settings: dict) -> str | None:
    """Why `out` holds no complete result of these inputs and settings, in words (`NO_RESULT`
    when it holds none at all); None when it does. Complete means: hvc-run's summary says so,
    names these inputs and records their fingerprints as they are now and these settings, and
    its outputs are there (one mask a frame)."""
    out = Path(out)
    try:
        summary = json.loads((out / SUMMARY).read_text())
    except (OSError, ValueError):
        return NO_RESULT
    if not (
        isinstance(summary, dict)
        and summary.get("tool") == TOOL
        and summary.get("complete") is True
    ):
        return NO_RESULT
    for key, path in (("video", Path(video)), ("mask", Path(mask))):
        made_from = summary.get(key)
        if not isinstance(made_from, str) or Path(made_from).resolve() != path.resolve():
            return f"it was made from another {key} ({made_from})"
    changed = changed_input(summary.get("inputs"), Path(video), Path(mask))
    if changed:
        return changed
    other = [key for key, value in _as_json(settings).items() if summary.get(key) != value]
    if other:
        return f"it was made with other settings ({', '.join(other)})"
    return _missing_output(out, summary)


def _missing_output(out: Path, summary: dict) -> str | None:
    """What of its outputs a complete result lacks (removed since), in words."""
    masks = out / "masks"
    found = sum(1 for p in masks.glob("*.png")) if masks.is_dir() else 0
    if found != summary.get("frames"):
        return f"its masks/ holds {found} masks, not the {summary.get('frames')} it made"
    if summary.get("with_overlay") and not (out / "overlay.mp4").is_file():
        return "its overlay.mp4 is missing"
    return None


def _as_json(values: dict) -> dict:
    """`values` as they read back from a summary (tuples as lists, and so on)."""
    return json.loads(json.dumps(values))
