"""Region similarity J and boundary accuracy F, as defined by the official davis2017-evaluation.

J is the IoU (1 when both masks are empty). F matches one-pixel boundaries (`seg2bmap`) within
a disk of radius ceil(0.008·image diagonal), with the toolkit's edge cases. Statistics per object:
mean, recall (fraction of frames above 0.5) and decay (first quarter minus last quarter).
"""

from __future__ import annotations

import functools
import math
import warnings

import cv2
import numpy as np

BOUNDARY_THRESHOLD = 0.008


def jaccard(prediction: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two boolean masks; 1.0 when both are empty."""
    union = np.logical_or(prediction, truth).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(prediction, truth).sum() / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary: a pixel differing from its right, bottom or bottom-right neighbour."""
    seg = mask.astype(bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    boundary = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    boundary[-1, :] = seg[-1, :] ^ east[-1, :]
    boundary[:, -1] = seg[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


@functools.cache
def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (xx**2 + yy**2 <= radius**2).astype(np.uint8)


def boundary_f(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Boundary F-measure with the DAVIS tolerance and edge cases."""
    radius = math.ceil(BOUNDARY_THRESHOLD * math.hypot(*prediction.shape[:2]))
    pred_b = boundary_map(prediction)
    true_b = boundary_map(truth)
    n_pred, n_true = int(pred_b.sum()), int(true_b.sum())
    if n_pred == 0 and n_true == 0:
        return 1.0
    if n_pred == 0 or n_true == 0:
        return 0.0  # precision or recall is 0 and the other is 1
    disk = _disk(radius)
    pred_dil = cv2.dilate(pred_b.astype(np.uint8), disk).astype(bool)
    true_dil = cv2.dilate(true_b.astype(np.uint8), disk).astype(bool)
    precision = np.logical_and(pred_b, true_dil).sum() / n_pred
    recall = np.logical_and(true_b, pred_dil).sum() / n_true
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """(mean, recall, decay) of one object's per-frame values, as the DAVIS toolkit computes them.

    The toolkit casts the bin edges to uint8, which breaks past 256 frames; integers are used here.
    """
    values = np.asarray(per_frame, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = float(np.nanmean(values))
        recall = float(np.nanmean(values > 0.5))
        edges = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.int64)
        bins = [values[edges[i] : edges[i + 1] + 1] for i in range(4)]
        decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay
