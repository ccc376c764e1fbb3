"""Score result folders against DAVIS ground truth and write the official CSV files.

Semi-supervised protocol of davis2017-evaluation: objects are the ids 1..max of the first
ground-truth frame, 255 is void (counted as background), the first and last frames are not
scored, and dataset figures are means over all objects of all sequences.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hvc_runtime.davis.dataset import DavisDataset
from hvc_runtime.davis.metrics import boundary_f, jaccard, statistics
from hvc_runtime.io.masks import read_mask
from hvc_runtime.utils.atomic import atomic_path
from hvc_runtime.utils.errors import HvcError

VOID_ID = 255
GLOBAL_COLUMNS = ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]


@dataclass
class ObjectScores:
    """Per-frame J and F of one object in one sequence, with the toolkit's statistics."""

    sequence: str
    object_id: int
    j: np.ndarray
    f: np.ndarray

    @property
    def name(self) -> str:
        return f"{self.sequence}_{self.object_id}"

    @property
    def j_stats(self) -> tuple[float, float, float]:
        return statistics(self.j)

    @property
    def f_stats(self) -> tuple[float, float, float]:
        return statistics(self.f)


@dataclass
class Evaluation:
    """All objects scored, and the dataset-level figures the DAVIS toolkit reports."""

    objects: list[ObjectScores] = field(default_factory=list)

    def _mean(self, pick) -> float:
        return float(np.mean([pick(o) for o in self.objects]))

    @property
    def j_mean(self) -> float:
        return self._mean(lambda o: o.j_stats[0])

    @property
    def f_mean(self) -> float:
        return self._mean(lambda o: o.f_stats[0])

    @property
    def jf_mean(self) -> float:
        return (self.j_mean + self.f_mean) / 2

    def global_row(self) -> list[float]:
        j = [self._mean(lambda o, i=i: o.j_stats[i]) for i in range(3)]
        f = [self._mean(lambda o, i=i: o.f_stats[i]) for i in range(3)]
        return [(j[0] + f[0]) / 2, *j, *f]

    def per_sequence(self) -> dict[str, tuple[float, float]]:
        """Mean J and F per sequence (objects averaged), for reports."""
        grouped: dict[str, list[ObjectScores]] = {}
        for o in self.objects:
            grouped.setdefault(o.sequence, []).append(o)
        return {
            seq: (
                float(np.mean([o.j_stats[0] for o in objs])),
                float(np.mean([o.f_stats[0] for o in objs])),
            )
            for seq, objs in grouped.items()
        }

    def write_csv(self, folder: Path, split: str) -> tuple[Path, Path]:
        """`global_results-<split>.csv` and `per-sequence_results-<split>.csv`, official layout."""
        global_path = folder / f"global_results-{split}.csv"
        sequence_path = folder / f"per-sequence_results-{split}.csv"
        rows = [[o.name, f"{o.j_stats[0]:.3f}", f"{o.f_stats[0]:.3f}"] for o in self.objects]
        try:
            _write_rows(global_path, [GLOBAL_COLUMNS, [f"{v:.3f}" for v in self.global_row()]])
            _write_rows(sequence_path, [["Sequence", "J-Mean", "F-Mean"], *rows])
        except OSError as exc:
            raise HvcError(f"{folder}: cannot write the score CSV files ({exc.strerror})") from exc
        return global_path, sequence_path


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    """A CSV file written atomically: a failed write leaves no scores that look complete."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def _ground_truth(path: Path, single_object: bool) -> np.ndarray:
    truth = read_mask(path).copy()
    truth[truth == VOID_ID] = 0
    return (truth > 0).astype(np.uint8) if single_object else truth


def evaluate_sequence(
    truth_files: list[Path], results_dir: Path, sequence: str, single_object: bool = False
) -> list[ObjectScores]:
    """Score one sequence's result PNGs (same file names as the ground truth)."""
    if len(truth_files) < 3:
        raise HvcError(f"{truth_files[0].parent}: fewer than 3 annotated frames, nothing to score")
    num_objects = int(_ground_truth(truth_files[0], single_object).max())
    scored = truth_files[1:-1]
    j = np.zeros((num_objects, len(scored)))
    f = np.zeros((num_objects, len(scored)))
    for k, truth_file in enumerate(scored):
        truth = _ground_truth(truth_file, single_object)
        result_file = results_dir / truth_file.name
        if not result_file.is_file():
            raise HvcError(
                f"{result_file}: result mask missing for {sequence} (looked in "
                f"{_layout(results_dir)})"
            )
        result = read_mask(result_file)
        if single_object:
            result = (result > 0).astype(np.uint8)
        if result.shape != truth.shape:
            raise HvcError(
                f"{result_file}: size {result.shape} differs from ground truth {truth.shape}"
            )
        if result.max() > num_objects:
            raise HvcError(
                f"{result_file}: id {result.max()} but the sequence has {num_objects} objects "
                "(DAVIS-2016 results are scored with all ids as one object)"
            )
        for obj in range(num_objects):
            predicted, expected = result == obj + 1, truth == obj + 1
            j[obj, k] = jaccard(predicted, expected)
            f[obj, k] = boundary_f(predicted, expected)
    return [ObjectScores(sequence, obj + 1, j[obj], f[obj]) for obj in range(num_objects)]


def evaluate(
    dataset: DavisDataset,
    results_root: Path,
    sequences: Iterable[str],
    single_object: bool = False,
) -> Evaluation:
    """Score each sequence's result masks, in either layout (`sequence_results`)."""
    if not results_root.is_dir():
        raise HvcError(f"{results_root}: results folder not found")
    evaluation = Evaluation()
    for sequence in sequences:
        results_dir = sequence_results(results_root, sequence)
        evaluation.objects += evaluate_sequence(
            dataset.annotation_files(sequence), results_dir, sequence, single_object
        )
    return evaluation


LAYOUTS = ("<results>/<sequence>/<frame>.png", "<results>/<sequence>/masks/<frame>.png (hvc-run)")


def sequence_results(results_root: Path, sequence: str) -> Path:
    """Where a sequence's result masks are: `<sequence>/masks/` when it is an hvc-run result
    folder (`hvc-run --jobs` writes one per sequence), else `<sequence>/` itself (the flat
    layout `hvc-eval --run` and the official tools write). The error names both."""
    folder = results_root / sequence
    if (folder / "masks").is_dir():
        return folder / "masks"
    if folder.is_dir() and any(folder.glob("*.png")):
        return folder
    problem = "no result masks" if folder.is_dir() else "folder not found (no results)"
    raise HvcError(
        f"{folder}: {problem} for sequence {sequence} (looked for {LAYOUTS[0]} and {LAYOUTS[1]})"
    )


def _layout(results_dir: Path) -> str:
    return LAYOUTS[1] if results_dir.name == "masks" else LAYOUTS[0]
