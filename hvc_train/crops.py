"""Two random resized crops of one image, with each crop's box in normalised image coordinates.

This is the official pseudo-pair: the crop area is U(min_scale, max_scale) of the image, the
aspect ratio log-uniform in [3/4, 4/3], up to 10 tries and then a centre crop; no flips or colour
changes. Boxes are `(x0, y0, x1, y1) = (j/(W-1), i/(H-1), (j+w-1)/(W-1), (i+h-1)/(H-1))`.
Randomness comes from an explicit generator so a sample is a function of (seed, epoch, index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

RATIO = (3 / 4, 4 / 3)
TRIES = 10


@dataclass(frozen=True)
class CropBox:
    top: int
    left: int
    height: int
    width: int

    def normalized(self, image_height: int, image_width: int) -> tuple[float, float, float, float]:
        sx, sy = max(image_width - 1, 1), max(image_height - 1, 1)
        return (
            self.left / sx,
            self.top / sy,
            (self.left + self.width - 1) / sx,
            (self.top + self.height - 1) / sy,
        )


def sample_crop(
    height: int,
    width: int,
    rng: np.random.Generator,
    min_scale: float = 0.0,
    max_scale: float = 1.0,
) -> CropBox:
    """The torchvision RandomResizedCrop rule with the official scale range (0, 1)."""
    area = height * width
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(TRIES):
        target = area * rng.uniform(min_scale, max_scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return CropBox(top, left, h, w)
    in_ratio = width / height
    if in_ratio < RATIO[0]:
        w, h = width, round(width / RATIO[0])
    elif in_ratio > RATIO[1]:
        h, w = height, round(height * RATIO[1])
    else:
        w, h = width, height
    return CropBox((height - h) // 2, (width - w) // 2, h, w)


def crop_pair(
    image: np.ndarray,
    rng: np.random.Generator,
    size: int = 256,
    min_scale: float = 0.0,
    max_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two independent crops of an H×W×3 uint8 image, resized to size×size (bilinear).

    Returns two uint8 3×size×size tensors and their float32 normalised boxes; normalisation of
    the pixels happens on the device, batched, not per sample here.
    """
    height, width = image.shape[:2]
    views, boxes = [], []
    for _ in range(2):
        box = sample_crop(height, width, rng, min_scale, max_scale)
        patch = image[box.top : box.top + box.height, box.left : box.left + box.width]
        # a copy: images decoded by PIL are read-only, and a crop of the whole width is no copy
        tensor = torch.from_numpy(patch.copy()).permute(2, 0, 1)[None].float()
        resized = F.interpolate(
            tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        views.append(resized[0].round_().clamp_(0, 255).to(torch.uint8))
        boxes.append(torch.tensor(box.normalized(height, width), dtype=torch.float32))
    return views[0], views[1], boxes[0], boxes[1]


def cell_centres(boxes: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-normalised centres [B, grid*grid, 2] of the feature cells of each box, and the cell
    diagonals [B]: cell (x, y) sits at ((x + 0.5)·bw + x0, (y + 0.5)·bh + y0)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    bw, bh = (x1 - x0) / grid, (y1 - y0) / grid
    steps = torch.arange(grid, device=boxes.device, dtype=boxes.dtype) + 0.5
    xs = steps[None] * bw[:, None] + x0[:, None]  # [B, grid]
    ys = steps[None] * bh[:, None] + y0[:, None]
    centres = torch.stack(
        [xs[:, None, :].expand(-1, grid, -1), ys[:, :, None].expand(-1, -1, grid)], dim=-1
    )
    return centres.reshape(boxes.shape[0], grid * grid, 2), torch.sqrt(bw**2 + bh**2)
