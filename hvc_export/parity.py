"""The export-time parity check: the artifact against the PyTorch encoder it came from.

Features are compared on several inputs at more than one size (real frames when given, else
generated natural-looking textures): max abs error and mean cosine similarity per position. A
short clip is then propagated with both, and the final masks compared pixel by pixel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from hvc_runtime.encoder.network import InferenceEncoder
from hvc_runtime.segmenter import Segmenter

TOLERANCES = {
    "fp32": {"min_cosine": 0.99999, "min_mask_agreement": 0.0},
    "fp16": {"min_cosine": 0.999, "min_mask_agreement": 0.995},
}


@dataclass
class ParityReport:
    sizes: list[list[int]]
    inputs: str
    max_abs_error: float
    mean_cosine: float
    min_cosine: float
    mask_agreement: float
    tolerance: dict[str, float]
    passed: bool

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"mean cosine {self.mean_cosine:.6f} (≥ {self.tolerance['min_cosine']}), "
            f"max abs error {self.max_abs_error:.2e}, mask agreement {100 * self.mask_agreement:.2f}%"
        )


def natural_texture(height: int, width: int, seed: int) -> np.ndarray:
    """Multi-scale colour noise with a 1/f-like spectrum: close enough to photos for features."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float32)
    for octave, cells in enumerate((4, 8, 16, 32, 64)):
        coarse = rng.random((max(2, height // cells), max(2, width // cells), 3)).astype(np.float32)
        image += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) / (octave + 1)
    image -= image.min()
    return (255 * image / image.max()).astype(np.uint8)


def _clip(
    frames: Sequence[np.ndarray] | None, height: int, width: int, count: int
) -> list[np.ndarray]:
    """Real frames resized to the size, or a generated texture panning sideways."""
    if frames:
        return [
            cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames[:count]
        ]
    texture = natural_texture(height, width + 4 * count, seed=height * 31 + width)
    return [texture[:, 4 * (count - t) : 4 * (count - t) + width] for t in range(count)]


def _tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


@torch.inference_mode()
def check_parity(
    reference: InferenceEncoder,
    artifact: Callable[[torch.Tensor], torch.Tensor],
    precision: str,
    sizes: Sequence[tuple[int, int]],
    frames: Sequence[np.ndarray] | None = None,
    clip_length: int = 6,
) -> ParityReport:
    reference = reference.eval()
    max_abs, cosines = 0.0, []
    for height, width in sizes:
        for rgb in _clip(frames, height, width, 2):
            expected = reference(_tensor(rgb))
            got = artifact(_tensor(rgb)).float().cpu()
            max_abs = max(max_abs, float((got - expected).abs().max()))
            cosines.append(F.cosine_similarity(got, expected, dim=1).flatten())
    cosine = torch.cat(cosines)
    height, width = sizes[0]
    clip = _clip(frames, height, width, clip_length)
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : 3 * height // 4, width // 4 : width // 2] = 1
    mask[height // 3 : 2 * height // 3, width // 2 + 8 : 7 * width // 8] = 2
    outputs = []
    for encoder in (reference, artifact):
        segmenter = Segmenter(encoder)
        outputs.append([segmenter.step(f, mask if t == 0 else None) for t, f in enumerate(clip)])
    agreement = float(np.mean([(a == b).mean() for a, b in zip(*outputs, strict=True)]))
    tolerance = TOLERANCES[precision]
    passed = (
        float(cosine.mean()) >= tolerance["min_cosine"]
        and agreement >= tolerance["min_mask_agreement"]
    )
    return ParityReport(
        sizes=[list(s) for s in sizes],
        inputs="real frames" if frames else "generated textures",
        max_abs_error=max_abs,
        mean_cosine=float(cosine.mean()),
        min_cosine=float(cosine.min()),
        mask_agreement=agreement,
        tolerance=tolerance,
        passed=passed,
    )
