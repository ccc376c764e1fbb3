"""The online Python API: give frames one at a time (and masks when objects appear), get masks back.

    segmenter = Segmenter(load_encoder().encoder, device="cuda", precision="fp16")
    for t, frame in enumerate(frames):                 # H×W×3 uint8 RGB
        ids = segmenter.step(frame, first_mask if t == 0 else None)   # H×W uint8 object ids

Resampling follows the official code: masks go to the feature grid and soft labels come back to
the frame with bilinear, align_corners=True interpolation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hvc_runtime.backends import EncoderBackend
from hvc_runtime.backends.torch_module import TorchBackend
from hvc_runtime.encoders import InferenceEncoder
from hvc_runtime.precision import DTYPES, Precision
from hvc_runtime.propagation import PROPAGATORS, PropagationConfig

_CHANNEL_GROUP = 16  # channels resampled at once, so 255 objects at 1080p stay within memory


class Segmenter:
    """Segment and track objects through a video from masks given at some frames.

    A mask given at frame t adds the ids it holds that are new (YouTube-VOS protocol); ids seen
    before are ignored there. Ids 1..255 are objects, 0 is background. `mode` picks the
    propagator: "fast" (local windows, the default) or "reference" (dense, official layout);
    both give the same masks.
    """

    def __init__(
        self,
        encoder: InferenceEncoder | EncoderBackend,
        config: PropagationConfig = PropagationConfig(),
        device: str | torch.device = "cpu",
        precision: Precision = "fp32",
        short_side: int | None = None,
        mode: str = "fast",
    ) -> None:
        if precision not in DTYPES:
            raise ValueError(f"precision must be one of {sorted(DTYPES)}, got {precision!r}")
        if mode not in PROPAGATORS:
            raise ValueError(f"mode must be one of {sorted(PROPAGATORS)}, got {mode!r}")
        self.device = torch.device(device)
        if isinstance(encoder, nn.Module):
            encoder = TorchBackend(encoder, self.device, precision)
        self.encoder = encoder
        self.precision = precision
        self.short_side = short_side
        self.mode = mode
        self.propagator = PROPAGATORS[mode](config)
        self.reset()

    def reset(self) -> None:
        """Forget the current video."""
        self.propagator.reset()
        self.ids: list[int] = []

    @property
    def object_ids(self) -> list[int]:
        """Object ids tracked so far (background excluded)."""
        return [i for i in self.ids if i != 0]

    @torch.inference_mode()
    def encode(self, frame: np.ndarray | torch.Tensor) -> torch.Tensor:
        """H×W×3 uint8 RGB → [D, h, w] features in the propagation dtype.

        A pinned uint8 tensor uploads asynchronously; a numpy array is copied as usual."""
        if isinstance(frame, np.ndarray):
            frame = torch.from_numpy(np.ascontiguousarray(frame))
        asynchronous = self.device.type == "cuda" and frame.is_pinned()
        rgb = frame.to(self.device, non_blocking=asynchronous)
        rgb = rgb.permute(2, 0, 1)[None].float().div_(255)
        if self.short_side is not None:
            scale = self.short_side / min(rgb.shape[-2:])
            size = [max(1, round(s * scale)) for s in rgb.shape[-2:]]
            rgb = F.interpolate(
                rgb, size=size, mode="bilinear", align_corners=False, antialias=True
            )
        features = self.encoder(rgb)[0]
        return features.to(DTYPES[self.precision])

    @torch.inference_mode()
    def step(self, frame: np.ndarray | torch.Tensor, mask: np.ndarray | None = None) -> np.ndarray:
        """Segment the next frame (H×W×3 uint8 RGB); returns an H×W uint8 id map."""
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame must be H×W×3 RGB, got shape {frame.shape}")
        height, width = frame.shape[:2]
        if mask is not None and mask.shape != (height, width):
            raise ValueError(f"mask shape {mask.shape} differs from frame shape {(height, width)}")
        if mask is None and not self.ids:
            raise ValueError("the first frame needs a mask")
        features = self.encode(frame)
        grid = features.shape[-2:]
        new_labels = None
        if mask is not None:
            present = [int(i) for i in np.unique(mask)]
            new_ids = present if not self.ids else [i for i in present if i not in self.ids and i]
            if new_ids:
                new_labels = self._downsample(mask, new_ids, grid)
                self.ids.extend(new_ids)
        labels = self.propagator.step(features, new_labels)
        return self._to_ids(labels, (height, width))

    def _downsample(self, mask: np.ndarray, ids: list[int], grid: torch.Size) -> torch.Tensor:
        """One-hot of `ids` at full resolution → bilinear (align_corners=True) on the feature grid."""
        full = torch.from_numpy(mask.astype(np.int64)).to(self.device)
        groups = []
        for start in range(0, len(ids), _CHANNEL_GROUP):
            chosen = torch.tensor(ids[start : start + _CHANNEL_GROUP], device=self.device)
            one_hot = (full[None] == chosen[:, None, None]).float()[None]
            groups.append(
                F.interpolate(one_hot, size=tuple(grid), mode="bilinear", align_corners=True)[0]
            )
        return torch.cat(groups)

    def _to_ids(self, labels: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """Upsample soft labels channel group by channel group and take the first maximum."""
        best_value = best_channel = None
        for start in range(0, labels.shape[0], _CHANNEL_GROUP):
            group = labels[None, start : start + _CHANNEL_GROUP]
            up = F.interpolate(group, size=size, mode="bilinear", align_corners=True)[0]
            value, channel = up.max(0)
            channel += start
            if best_value is None:
                best_value, best_channel = value, channel
            else:
                better = value > best_value
                best_value = torch.where(better, value, best_value)
                best_channel = torch.where(better, channel, best_channel)
        lookup = torch.tensor(self.ids, dtype=torch.uint8, device=labels.device)
        return lookup[best_channel].cpu().numpy()
