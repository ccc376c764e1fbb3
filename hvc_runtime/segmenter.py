"""The online Python API: give frames one at a time (and masks when objects appear), get masks back.

    segmenter = Segmenter.from_checkpoint("hvc.safetensors", device="cuda", precision="fp16")
    for ids in segmenter.track(open_frames("video.mp4"), read_mask("mask.png")):
        ...                                    # H×W uint8 object ids, one map per frame

Resampling follows the official code: masks go to the feature grid and soft labels come back to
the frame with bilinear, align_corners=True interpolation.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hvc_runtime.encoder.backends import EncoderBackend
from hvc_runtime.encoder.backends.torch_module import TorchBackend
from hvc_runtime.encoder.checkpoints import DEFAULT_CHECKPOINT
from hvc_runtime.encoder.loading import LoadedBackend, load_encoder_backend
from hvc_runtime.encoder.network import InferenceEncoder
from hvc_runtime.encoder.precision import Precision, dtype_of
from hvc_runtime.io.fingerprints import weights_fingerprints
from hvc_runtime.io.frames import Frame
from hvc_runtime.propagation import PROPAGATORS, PropagationConfig
from hvc_runtime.utils.devices import device_ints, resolve_device
from hvc_runtime.utils.errors import HvcWarning, OptionError

_CHANNEL_GROUP = 16  # channels resampled at once, so 255 objects at 1080p stay within memory
MIN_SHORT_SIDE = 8


def _is_out_of_memory(exc: Exception) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's RuntimeError."""
    return isinstance(exc, torch.OutOfMemoryError) or "allocate memory" in str(exc)


class Segmenter:
    """Segment and track objects through a video from masks given at some frames.

    A mask given at frame t adds the ids it holds that are new (YouTube-VOS protocol); ids seen
    before are ignored there. Ids 1..255 are objects, 0 is background. `mode` picks the
    propagator: "fast" (local windows, the default) or "reference" (dense, official layout);
    both give the same masks. `Segmenter.from_checkpoint` builds one from weights or an
    exported artifact, as `hvc-run` does.
    """

    def __init__(
        self,
        encoder: InferenceEncoder | EncoderBackend,
        config: PropagationConfig = PropagationConfig(),
        *,
        device: str | torch.device = "cpu",
        precision: Precision = "fp32",
        short_side: int | None = None,
        mode: str = "fast",
        kernel: str = "auto",
        gpu_decode: bool = True,
        source: LoadedBackend | None = None,
    ) -> None:
        self.dtype = dtype_of(precision)
        if mode not in PROPAGATORS:
            raise OptionError("mode", mode, f"choose one of {', '.join(PROPAGATORS)}")
        if mode != "fast" and kernel != "auto":
            raise OptionError("kernel", kernel, f"only the fast mode has kernels, not {mode}")
        if short_side is not None and short_side < MIN_SHORT_SIDE:
            raise OptionError("short_side", short_side, "must be at least 8 pixels")
        self.device = torch.device(device)
        if isinstance(encoder, nn.Module):
            encoder = TorchBackend(encoder, self.device, precision)
        self.encoder = encoder
        self.source = source or LoadedBackend(encoder, f"{type(encoder).__name__} given")
        # size and modification time of the checkpoint files loaded (`from_checkpoint`): results
        # record them, so that weights retrained under the same name are known as other weights
        self.weight_files: dict[str, dict] = {}
        self.precision = precision
        self.short_side = short_side
        self.mode = mode
        self.gpu_decode = gpu_decode
        options = {"kernel": kernel} if mode == "fast" else {}
        self.propagator = PROPAGATORS[mode](config, **options)
        self.reset()

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path | None = None,
        *,
        config: PropagationConfig = PropagationConfig(),
        device: str = "auto",
        precision: Precision = "fp32",
        backend: str = "auto",
        mode: str = "fast",
        kernel: str = "auto",
        short_side: int | None = None,
        gpu_decode: bool = True,
        moco: str | Path | None = None,
        official_bn_drift: bool = False,
    ) -> Segmenter:
        """A segmenter for a checkpoint (`.safetensors`, official `.pth`; None: the default
        encoder) or an exported artifact (its manifest picks the runtime; `backend` may
        confirm it). `checkpoint` and `moco` may also be published model names (`hvc-ytb`,
        `moco-v1`, ...) or URLs, downloaded and checked on first use. `source` then says what
        was loaded (`.source.description`).

        `kernel` picks the fast mode's scoring kernel (auto: Triton on CUDA); `gpu_decode`
        lets `segment_video` decode JPEG frame folders on the GPU (nvJPEG, whose pixels differ
        slightly from PIL's, so exact comparisons with CPU or official runs turn it off)."""
        target = resolve_device(device)
        dtype_of(precision)  # refuse a bad precision before any weights are loaded
        files = [Path(p) for p in (checkpoint or DEFAULT_CHECKPOINT, moco) if p is not None]
        weight_files = weights_fingerprints(files)  # before loading: what was read, not what is now
        loaded = load_encoder_backend(
            checkpoint,
            target,
            precision=precision,
            backend=backend,
            moco=moco,
            official_bn_drift=official_bn_drift,
        )
        segmenter = cls(
            loaded.encoder,
            config,
            device=target,
            precision=precision,
            short_side=short_side,
            mode=mode,
            kernel=kernel,
            gpu_decode=gpu_decode,
            source=loaded,
        )
        segmenter.weight_files = weight_files
        return segmenter

    def reset(self) -> None:
        """Forget the current video."""
        self.propagator.reset()
        self._ids: list[int] = []

    @property
    def object_ids(self) -> list[int]:
        """Object ids tracked so far (background excluded)."""
        return [i for i in self._ids if i != 0]

    def track(
        self,
        frames: Iterable[np.ndarray | Frame],
        masks: np.ndarray | Mapping[int, np.ndarray],
    ) -> Iterator[np.ndarray]:
        """Segment a whole video: one H×W uint8 id map per frame, in order.

        `masks` is the first frame's id mask, or {frame index: mask} for objects that appear
        later. `frames` are H×W×3 uint8 RGB arrays or `Frame`s (e.g. `open_frames(path)`)."""
        given = masks if isinstance(masks, Mapping) else {0: masks}
        self.reset()
        for index, frame in enumerate(frames):
            pixels = frame.input() if isinstance(frame, Frame) else frame
            yield self.step(pixels, given.get(index))

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
        return features.to(self.dtype)

    def step(self, frame: np.ndarray | torch.Tensor, mask: np.ndarray | None = None) -> np.ndarray:
        """Segment the next frame (H×W×3 uint8 RGB); returns an H×W uint8 id map."""
        return self.segment(frame, mask).cpu().numpy()

    @torch.inference_mode()
    def segment(
        self, frame: np.ndarray | torch.Tensor, mask: np.ndarray | None = None
    ) -> torch.Tensor:
        """`step` without the download: the H×W uint8 id map stays on the device, so a caller
        can keep the GPU busy and synchronise when it needs the result."""
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame must be H×W×3 RGB, got shape {tuple(frame.shape)}")
        height, width = frame.shape[:2]
        if mask is not None and mask.shape != (height, width):
            raise ValueError(f"mask shape {mask.shape} differs from frame shape {(height, width)}")
        if mask is None and not self._ids:
            raise ValueError("the first frame needs a mask")
        try:
            features = self.encode(frame)
            new_labels = self._new_objects(mask, features.shape[-2:]) if mask is not None else None
            labels = self.propagator.step(features, new_labels)
            return self._to_ids(labels, (height, width))
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not _is_out_of_memory(exc):
                raise
            raise self._out_of_memory(exc, height, width) from exc

    def _new_objects(self, mask: np.ndarray, grid: torch.Size) -> torch.Tensor | None:
        """Label maps of the ids in `mask` not seen before; warns about ids too small to track."""
        present = [int(i) for i in np.unique(mask)]
        new_ids = present if not self._ids else [i for i in present if i not in self._ids and i]
        if not new_ids:
            return None
        labels = self._downsample(mask, new_ids, grid)
        # an object of fewer pixels than one cell is too small wherever it lies; the grid test
        # alone missed one on a grid point (a corner), which keeps a whole cell's weight
        cell = mask.size / (grid[0] * grid[1])
        pixels = np.bincount(mask.ravel(), minlength=256)
        lost = [
            i
            for i, area in zip(new_ids, labels.flatten(1).sum(1).tolist(), strict=True)
            if i and (not area or pixels[i] < cell)
        ]
        if lost:
            warnings.warn(
                f"object{'s' if len(lost) > 1 else ''} {', '.join(map(str, lost))} smaller than "
                f"one feature cell at {grid[0]}x{grid[1]}: cannot be tracked (a larger short side "
                "or a larger mask keeps it)",
                HvcWarning,
                stacklevel=3,
            )
        self._ids.extend(new_ids)
        return labels

    def _out_of_memory(self, exc: Exception, height: int, width: int) -> OptionError:
        """An allocation failure as a one-line error saying how much was asked."""
        asked = re.search(r"[Tt]ried to allocate ([\d.]+ [KMGT]iB|\d+ bytes)", str(exc))
        amount = asked[1] if asked else "more than is free"
        if amount.endswith("bytes"):
            amount = f"{int(amount.split()[0]) / 2**30:.2f} GiB"
        return OptionError(
            "short_side",
            self.short_side or "native",
            f"out of {self.device.type} memory segmenting {width}x{height} frames "
            f"(tried to allocate {amount}); a smaller short side needs less",
        )

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

    def _to_ids(self, labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
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
        lookup = device_ints(tuple(self._ids), torch.uint8, labels.device)  # no per-frame upload
        return lookup[best_channel]
