"""Propagate one sequence of a DAVIS-format dataset from its annotations, into result PNGs."""

from __future__ import annotations

from pathlib import Path

from hvc_runtime.davis.dataset import DavisDataset
from hvc_runtime.io.frames import ImageFolderSource
from hvc_runtime.io.given_masks import masks_for_frames
from hvc_runtime.pipeline import ProgressCallback, SegmentationSummary, segment_video
from hvc_runtime.segmenter import Segmenter


def propagate_sequence(
    dataset: DavisDataset,
    name: str,
    segmenter: Segmenter,
    results: Path,
    *,
    all_annotations: bool = False,
    on_frame: ProgressCallback | None = None,
) -> SegmentationSummary:
    """Masks for every frame of `name` in `results/name`, from its first annotation (DAVIS
    semi-supervised protocol) or from every annotation file (YouTube-VOS protocol)."""
    source = ImageFolderSource(dataset.frames_dir(name))
    files = dataset.annotation_files(name)
    masks = masks_for_frames(files if all_annotations else files[:1], source)
    return segment_video(source, masks, segmenter, masks_dir=results / name, on_frame=on_frame)
