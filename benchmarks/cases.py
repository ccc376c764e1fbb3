"""The measurements: encoder latency, propagation per frame, end to end, memory vs length."""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.encoders import BASELINE, Variant
from benchmarks.measure import peak_memory_mb, reset_peak_memory, time_call
from hvc_runtime.encoder.backends.torch_module import TorchBackend
from hvc_runtime.encoder.checkpoints import random_encoder
from hvc_runtime.encoder.network import feature_size
from hvc_runtime.encoder.precision import DTYPES
from hvc_runtime.io.frames import FrameSource, ImageFolderSource
from hvc_runtime.pipeline import segment_video
from hvc_runtime.propagation import (
    DensePropagator,
    FastPropagator,
    OnlinePropagator,
    PropagationConfig,
)
from hvc_runtime.segmenter import Segmenter

SIZES = {"480p": (480, 854), "720p": (720, 1280), "1080p": (1080, 1920)}
# propagators to time; the dense reference is every speed-up's baseline
IMPLEMENTATIONS = {
    "reference": DensePropagator,
    "fast": lambda config=PropagationConfig(): FastPropagator(config, kernel="torch"),
    "fast-triton": lambda config=PropagationConfig(): FastPropagator(config, kernel="triton"),
}


def unavailable(implementation: str, device: torch.device) -> str | None:
    """Why an implementation cannot be timed on `device`, or None."""
    if implementation not in IMPLEMENTATIONS:
        return f"unknown (choose from {', '.join(IMPLEMENTATIONS)})"
    if implementation == "fast-triton" and device.type != "cuda":
        return "Triton kernels need a CUDA GPU (CI runs them in Triton's interpreter)"
    return None


def frame_size(name: str) -> tuple[int, int]:
    """'480p', '720p', '1080p' or 'HEIGHTxWIDTH'."""
    if name in SIZES:
        return SIZES[name]
    height, _, width = name.lower().partition("x")
    if not (height.isdigit() and width.isdigit()):
        raise ValueError(f"size {name!r}: use 480p, 720p, 1080p or HEIGHTxWIDTH")
    return int(height), int(width)


def encoder_rows(
    variants: list[Variant], sizes: list[str], batches: list[int], device, warmup, runs
):
    rows = []
    for size in sizes:
        height, width = frame_size(size)
        for batch in batches:
            frames = torch.rand(batch, 3, height, width, device=device)
            baseline = None
            for variant in variants:
                if variant.encode is None:
                    continue
                with torch.inference_mode():
                    # the first call compiles, captures or tunes: reported apart
                    first = time_call(lambda v=variant, x=frames: v.encode(x), device, 0, 1)
                    timing = time_call(
                        lambda v=variant, x=frames: v.encode(x), device, warmup, runs
                    )
                if variant.name == BASELINE:
                    baseline = timing.median_ms
                rows.append(
                    {
                        "backend": variant.name,
                        "size": size,
                        "batch": batch,
                        "first_call_ms": first.median_ms,
                        **timing.as_dict(),
                        "images_per_s": 1000 * batch / timing.median_ms,
                        "speedup": (baseline / timing.median_ms) if baseline else None,
                    }
                )
    return rows


def steady_state_propagator(
    config: PropagationConfig,
    dim: int,
    grid: tuple[int, int],
    device,
    implementation: str,
    dtype: torch.dtype = torch.float32,
) -> tuple[OnlinePropagator, torch.Tensor]:
    """A propagator whose memory already holds a full context of distinct frames (the cost
    from frame 51 on), built without propagating 51 frames first; features in `dtype`, drawn
    on the device (no host copies)."""
    generator = torch.Generator(device=device).manual_seed(0)

    def unit() -> torch.Tensor:
        drawn = torch.randn(dim, *grid, generator=generator, device=device)
        return F.normalize(drawn, dim=0).to(dtype)

    propagator = IMPLEMENTATIONS[implementation](config)
    labels = torch.softmax(torch.randn(2, *grid, generator=generator, device=device), 0)
    propagator.step(unit(), labels)
    memory = propagator.references[0]
    for t in range(1, config.context_size + 1):
        memory.evict(t + 1, config.context_size)
        memory.keep(t, unit().reshape(dim, -1), labels.reshape(2, -1))
    propagator.t = config.context_size
    return propagator, unit()


def propagation_rows(
    sizes,
    dims,
    contexts,
    implementations,
    device,
    warmup,
    runs,
    dtypes=("fp32",),
    skipped=None,
    threads=(),
):
    """Per-frame propagation cost once the context is full, for each feature dtype; speed-up
    against the fp32 dense reference with the same size, features and context (measured in the
    same run; the reference runs in fp32 only). A variant that fails (e.g. a Triton build) is
    added to `skipped` with its reason and the others still run. `threads`: the fast rows again
    for each CPU thread count (the reference runs with the threads as they are)."""
    default_threads = torch.get_num_threads()
    rows = []
    for size, dim, context in itertools.product(sizes, dims, contexts):
        grid = feature_size(*frame_size(size))
        baseline = None
        for implementation in implementations:
            reference = implementation == "reference"
            variants = itertools.product(
                ["fp32"] if reference else dtypes,
                [default_threads] if reference or not threads else threads,
            )
            for precision, count in variants:
                features, fp32_scores = feature_setting(precision)
                config = PropagationConfig(context_size=context, fp32_scores=fp32_scores)
                torch.set_num_threads(count)
                try:
                    propagator, query = steady_state_propagator(
                        config, dim, grid, device, implementation, DTYPES[features]
                    )
                    # each step stores its frame and drops the oldest: the context stays full
                    timing = time_call(
                        lambda p=propagator, q=query: p.step(q), device, warmup, runs
                    )
                except Exception as exc:  # recorded; the other variants still run
                    if skipped is None:
                        raise
                    name = f"{implementation} {precision} {dim}-d {size}"
                    skipped.append({"backend": name, "reason": first_line(exc)})
                    continue
                finally:
                    torch.set_num_threads(default_threads)
                if reference:
                    baseline = timing.median_ms
                rows.append(
                    {
                        "implementation": implementation,
                        "features": precision,
                        "threads": count,
                        "size": size,
                        "feature_dim": dim,
                        "context": f"1+{context}",
                        **timing.as_dict(),
                        "frames_per_s": 1000 / timing.median_ms,
                        "speedup": baseline / timing.median_ms if baseline else None,
                    }
                )
    return rows


def feature_setting(name: str) -> tuple[str, bool]:
    """The precision and whether scores are ranked in fp32, from a name: fp32, fp16, bf16
    (ranked by fp32 scores), or fp16-scores, bf16-scores (ranked in that precision)."""
    precision, _, scores = name.partition("-")
    if precision not in DTYPES or scores not in ("", "scores"):
        raise ValueError(f"{name}: not one of fp32, fp16, bf16, fp16-scores, bf16-scores")
    return precision, scores == ""


def first_line(exc: BaseException) -> str:
    """An exception's first line, or its type when it has no message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def generated_video(
    folder: Path, frames: int, height: int, width: int
) -> tuple[FrameSource, np.ndarray]:
    """A textured pan written as JPEG frames, and its first mask."""
    from PIL import Image

    from hvc_export.parity import natural_texture

    texture = natural_texture(height, width + 2 * frames, seed=7)
    for t in range(frames):
        Image.fromarray(texture[:, 2 * t : 2 * t + width]).save(folder / f"{t:05d}.jpg", quality=90)
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : 3 * height // 4, width // 4 : width // 2] = 1
    return ImageFolderSource(folder), mask


def ping_pong(source: ImageFolderSource, frames: int, folder: Path) -> ImageFolderSource:
    """A real sequence played forth and back to `frames` frames (links to its JPEGs), so the
    end-to-end rate is measured in steady state, past the 51-frame context."""
    order = list(range(len(source.files))) + list(range(len(source.files) - 2, 0, -1))
    for t in range(frames):
        original = source.files[order[t % len(order)]]
        (folder / f"{t:05d}{original.suffix}").symlink_to(original.resolve())
    return ImageFolderSource(folder)


def davis_clip(root: Path, sequence: str, frames: int) -> tuple[FrameSource, list[np.ndarray]]:
    """The first `frames` frames of a DAVIS sequence and their ground-truth masks."""
    from hvc_runtime.io.masks import read_mask

    annotations = sorted((root / "Annotations" / "480p" / sequence).glob("*.png"))[:frames]
    source = ImageFolderSource(root / "JPEGImages" / "480p" / sequence)
    return source, [read_mask(path) for path in annotations]


def _rate(
    segmenter: Segmenter, method: str, frames: list, first_mask: np.ndarray, device
) -> tuple[float, float | None]:
    """Frames per second of a fresh video through `segmenter.<method>(frame, mask)`, with one
    synchronisation at the end: over the whole clip, and once the context is full (`_steady`;
    on CUDA, over the whole clip only, as frames are not synchronised one by one)."""
    segmenter.reset()
    step = getattr(segmenter, method)
    stamps = [time.perf_counter()]
    for t, frame in enumerate(frames):
        step(frame, first_mask if t == 0 else None)
        stamps.append(time.perf_counter())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return len(frames) / (time.perf_counter() - stamps[0]), None
    return len(frames) / (stamps[-1] - stamps[0]), _steady(stamps, segmenter)


def _steady(stamps: list[float], segmenter: Segmenter) -> float | None:
    """Frames per second after the first frame with a full context (None: the clip is shorter).

    `stamps[i]` is when frame i-1 finished (`stamps[0]`: the start)."""
    full = segmenter.propagator.config.context_size + 1  # the first frame with a full context
    if len(stamps) - 1 <= full + 1:
        return None
    return (len(stamps) - 1 - full) / (stamps[-1] - stamps[full])


def end_to_end_rows(
    sources: dict[str, tuple[ImageFolderSource, np.ndarray]],
    modes: list[str],
    device,
    *,
    precisions: list[str] = ("fp32",),
    cuda_graphs: bool = False,
    kernel: str = "auto",
    warmup_frames: int = 0,
):
    """Frames per second over whole clips, three ways: the full pipeline with decoding and
    palette-PNG writing (`segment_video`); compute only (frames decoded beforehand, id maps
    downloaded every frame); GPU-side only (frames already on the device, id maps left there,
    one synchronisation at the end; not on a CPU, where it is the compute-only figure) — the
    encoder and the propagation alone. First, untimed, the pipeline runs the clip's first
    `warmup_frames` frames (kernel builds, graph capture, decoder start-up). `precisions` are
    names as `feature_setting` reads them."""
    rows = []
    for name, (source, first_mask) in sources.items():
        frames = [f.rgb for f in source]
        on_device = [torch.from_numpy(f).to(device) for f in frames]
        for mode, precision in itertools.product(modes, precisions):
            encoding, fp32_scores = feature_setting(precision)
            encoder = TorchBackend(random_encoder(), device, encoding, cuda_graphs=cuda_graphs)
            options = {"kernel": kernel} if mode == "fast" else {}
            config = PropagationConfig(fp32_scores=fp32_scores)
            segmenter = Segmenter(
                encoder, config, device=device, precision=encoding, mode=mode, **options
            )
            with tempfile.TemporaryDirectory() as out:
                if warmup_frames:
                    (Path(out) / "warm").mkdir()
                    start = ping_pong(source, min(warmup_frames, len(frames)), Path(out) / "warm")
                    segment_video(start, {0: first_mask}, segmenter, masks_dir=Path(out) / "w")
                compute_fps, compute_steady = _rate(segmenter, "step", frames, first_mask, device)
                device_fps = device_steady = None
                if device.type != "cpu":
                    device_fps, device_steady = _rate(
                        segmenter, "segment", on_device, first_mask, device
                    )
                stamps = [time.perf_counter()]
                summary = segment_video(
                    source,
                    {0: first_mask},
                    segmenter,
                    masks_dir=Path(out) / "masks",
                    on_frame=lambda _, stamps=stamps: stamps.append(time.perf_counter()),
                )
            rows.append(
                {
                    "video": name,
                    "mode": mode,
                    "precision": precision,
                    "encoder": "cuda-graphs" if cuda_graphs else "eager",
                    "kernel": kernel if mode == "fast" else None,
                    "frames": summary.frames,
                    "size": f"{source.width}x{source.height}",
                    "fps_end_to_end": summary.frames / summary.seconds,
                    "fps_compute_only": compute_fps,
                    "fps_device_only": device_fps,
                    # once the context is full (CPU only), the rate of every later frame
                    "steady_fps_end_to_end": (
                        _steady(stamps, segmenter) if device.type == "cpu" else None
                    ),
                    "steady_fps_compute_only": compute_steady,
                    "steady_fps_device_only": device_steady,
                }
            )
        del on_device
    return rows


def agreement_rows(
    source: FrameSource, truth: list[np.ndarray], encoders: dict, device, precisions: list[str]
) -> list[dict]:
    """The fast mode against the fp32 reference on real frames: pixel agreement of the masks
    and J&F of each (first and last frame excluded), per encoder backend and precision."""
    from hvc_runtime.davis.metrics import boundary_f, jaccard

    frames = [f.rgb for _, f in zip(range(len(truth)), source, strict=False)]

    def masks(segmenter: Segmenter) -> list[np.ndarray]:
        return [segmenter.step(rgb, truth[0] if t == 0 else None) for t, rgb in enumerate(frames)]

    def jf(predicted: list[np.ndarray]) -> float:
        pairs = list(zip(predicted, truth, strict=True))[1:-1]
        j = np.mean([jaccard(p > 0, g > 0) for p, g in pairs])
        f = np.mean([boundary_f(p > 0, g > 0) for p, g in pairs])
        return 100 * (j + f) / 2

    reference = masks(Segmenter(encoders["torch"], device=device, mode="reference"))
    reference_jf = jf(reference)  # the fp32 dense reference: every precision is held to it
    rows = []
    for precision in precisions:
        for backend, encoder in encoders.items():
            fast = masks(Segmenter(encoder, device=device, precision=precision, mode="fast"))
            agree = np.mean([(a == b).mean() for a, b in zip(reference, fast, strict=True)])
            rows.append(
                {
                    "backend": backend,
                    "precision": precision,
                    "frames": len(frames),
                    "pixel_agreement_pct": 100 * float(agree),
                    "jf_reference": reference_jf,
                    "jf_fast": jf(fast),
                    "jf_difference": jf(fast) - reference_jf,
                }
            )
    return rows


def memory_rows(
    lengths: list[int], grid: tuple[int, int], dim: int, device, implementation: str
) -> list[dict]:
    """Memory after propagating N frames of random features (drawn on the device, so a long
    video costs the propagation only): it must not grow with N."""
    rows = []
    generator = torch.Generator(device=device).manual_seed(1)
    propagator = IMPLEMENTATIONS[implementation]()
    reset_peak_memory(device)
    labels = torch.softmax(torch.randn(2, *grid, generator=generator, device=device), 0)
    frames = 0
    for length in sorted(lengths):
        while frames < length:
            drawn = torch.randn(dim, *grid, generator=generator, device=device)
            propagator.step(F.normalize(drawn, dim=0), labels if frames == 0 else None)
            frames += 1
        rows.append(
            {
                "implementation": implementation,
                "frames": length,
                "grid": f"{grid[0]}x{grid[1]}",
                "memory_mb": peak_memory_mb(device),
            }
        )
    return rows
