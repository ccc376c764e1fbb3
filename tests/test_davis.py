"""DAVIS J/F: unit cases, official CSV layout, and agreement with vos-benchmark on real DAVIS."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from hvc_runtime.davis.dataset import DavisDataset
from hvc_runtime.davis.evaluation import evaluate
from hvc_runtime.davis.metrics import boundary_f, jaccard, statistics
from hvc_runtime.io.masks import read_mask, write_palette_png
from hvc_runtime.utils.errors import HvcError
from tests.conftest import DAVIS2016

VAL = ["blackswan", "bmx-trees", "car-shadow", "dance-twirl", "soapbox"]


def test_unit_cases():
    empty = np.zeros((20, 30), bool)
    square = empty.copy()
    square[5:15, 5:15] = True
    assert jaccard(empty, empty) == 1.0
    assert jaccard(square, square) == 1.0
    assert boundary_f(square, square) == 1.0
    assert boundary_f(empty, empty) == 1.0
    assert boundary_f(empty, square) == 0.0
    assert boundary_f(square, empty) == 0.0
    shifted = np.roll(square, 1, axis=1)
    assert jaccard(square, shifted) == pytest.approx(90 / 110)
    assert boundary_f(square, shifted) == 1.0  # within the tolerance disk


def test_statistics_mean_recall_decay():
    mean, recall, decay = statistics(np.array([1, 1, 1, 1, 0, 0, 0, 0.0]))
    assert (mean, recall, decay) == (0.5, 0.5, 1.0)


def make_dataset(root, sequences):
    """A tiny DAVIS-2017-style dataset with two objects whose second one drifts."""
    for seq in sequences:
        (root / "JPEGImages" / "480p" / seq).mkdir(parents=True)
        (root / "Annotations" / "480p" / seq).mkdir(parents=True)
        for t in range(6):
            ids = np.zeros((40, 60), np.uint8)
            ids[5:20, 5:25] = 1
            ids[22:35, 30 + t : 50 + t] = 2
            write_palette_png(root / "Annotations" / "480p" / seq / f"{t:05d}.png", ids)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")


def make_dataset_with_frames(root, sequences):
    """`make_dataset` with a textured JPEG for every annotated frame, so it can be segmented
    (`hvc-eval --run`); each sequence has its own texture."""
    from PIL import Image

    from tests.conftest import smooth_texture

    make_dataset(root, sequences)
    for seed, seq in enumerate(sequences):
        for t in range(6):
            frame = smooth_texture(40, 60, seed=seed + t % 2)
            Image.fromarray(frame).save(root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg")


def test_evaluation_and_csv_layout(tmp_path):
    make_dataset(tmp_path / "davis", ["a", "b"])
    dataset = DavisDataset(tmp_path / "davis")
    results = tmp_path / "results"
    for seq in ["a", "b"]:
        (results / seq).mkdir(parents=True)
        for t in range(6):
            ids = np.zeros((40, 60), np.uint8)
            ids[5:20, 5:25] = 1  # object 1 perfect, object 2 lost
            write_palette_png(results / seq / f"{t:05d}.png", ids)
    evaluation = evaluate(dataset, results, dataset.sequences("val"))
    assert [o.name for o in evaluation.objects] == ["a_1", "a_2", "b_1", "b_2"]
    assert evaluation.j_mean == pytest.approx(0.5)
    assert evaluation.jf_mean == pytest.approx(0.5)
    global_csv, sequence_csv = evaluation.write_csv(results, "val")
    rows = list(csv.reader(global_csv.open()))
    assert rows[0] == ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
    assert rows[1] == ["0.500", "0.500", "0.500", "0.000", "0.500", "0.500", "0.000"]
    rows = list(csv.reader(sequence_csv.open()))
    assert rows[0] == ["Sequence", "J-Mean", "F-Mean"] and rows[2] == ["a_2", "0.000", "0.000"]


def test_evaluation_errors(tmp_path):
    make_dataset(tmp_path / "davis", ["a"])
    dataset = DavisDataset(tmp_path / "davis")
    (tmp_path / "results" / "a").mkdir(parents=True)
    with pytest.raises(HvcError, match=r"no result masks for sequence a \(looked for .*masks"):
        evaluate(dataset, tmp_path / "results", ["a"])
    write_palette_png(tmp_path / "results" / "a" / "00000.png", np.zeros((40, 60), np.uint8))
    with pytest.raises(HvcError, match=r"00001\.png: result mask missing for a"):
        evaluate(dataset, tmp_path / "results", ["a"])
    for t in range(6):
        write_palette_png(
            tmp_path / "results" / "a" / f"{t:05d}.png", np.full((40, 60), 3, np.uint8)
        )
    with pytest.raises(HvcError, match="id 3 but the sequence has 2 objects"):
        evaluate(dataset, tmp_path / "results", ["a"])
    with pytest.raises(HvcError, match="not a DAVIS-format dataset"):
        DavisDataset(tmp_path)


def test_a_split_list_naming_unannotated_sequences_is_one_error(tmp_path):
    make_dataset(tmp_path / "davis", ["a"])
    (tmp_path / "davis" / "ImageSets" / "2017" / "val.txt").write_text("a\nghost\n")
    with pytest.raises(HvcError, match=r"Annotations/480p: no annotations for ghost$"):
        DavisDataset(tmp_path / "davis").sequences("val")
    with pytest.raises(HvcError, match="no ImageSets list for split 'test'"):
        DavisDataset(tmp_path / "davis").sequences("test")


@pytest.mark.realdata
def test_agrees_with_vos_benchmark_on_davis2016_val(tmp_path):
    """Two objects per sequence (the DAVIS-2016 object split at its median column), predictions
    made by shifting, eroding and dropping ground truth; J and F per object must match."""
    vos_benchmark = pytest.importorskip("vos_benchmark.benchmark")
    import cv2

    rng = np.random.default_rng(0)
    gt_root, pred_root = tmp_path / "gt", tmp_path / "pred"
    for seq in VAL:
        (gt_root / seq).mkdir(parents=True)
        (pred_root / seq).mkdir(parents=True)
        for k, path in enumerate(sorted((DAVIS2016 / "Annotations" / "480p" / seq).glob("*.png"))):
            binary = read_mask(path)
            ids = binary.copy()
            columns = np.nonzero(binary.any(0))[0]
            if columns.size:
                ids[:, int(np.median(columns)) :] *= 2
            Image.fromarray(ids, mode="L").save(gt_root / seq / path.name)
            pred = np.roll(ids, (int(rng.integers(-6, 7)), int(rng.integers(-6, 7))), axis=(0, 1))
            if k % 7 == 3:
                pred = cv2.erode(pred, np.ones((9, 9), np.uint8))
            if k % 11 == 5:
                pred[pred == 2] = 0
            Image.fromarray(pred, mode="L").save(pred_root / seq / path.name)
    layout = tmp_path / "davis"
    (layout / "Annotations").mkdir(parents=True)
    (layout / "Annotations" / "480p").symlink_to(gt_root)
    dataset = DavisDataset(layout)
    ours = evaluate(dataset, pred_root, VAL)
    _, global_j, global_f, per_object = vos_benchmark.benchmark(
        [str(gt_root)], [str(pred_root)], num_processes=2, verbose=False
    )
    theirs = per_object[0]
    differences = []
    assert len(ours.objects) == sum(len(j) for j, _ in theirs.values()) == 10
    for obj in ours.objects:
        their_j, their_f = theirs[obj.sequence]
        differences += [
            abs(obj.j_stats[0] - their_j[obj.object_id] / 100),
            abs(obj.f_stats[0] - their_f[obj.object_id] / 100),
        ]
    print(f"max |ours - vos-benchmark| over objects: {max(differences):.2e}")
    assert max(differences) < 1e-4
    assert abs(ours.j_mean - global_j[0] / 100) < 1e-4
    assert abs(ours.f_mean - global_f[0] / 100) < 1e-4
