"""The training loop: data → two views → online/target networks → HVC loss → Adam, with AMP,
exact resume, rank-0 checkpoints and logging, and the inference encoder exported at the end."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from hvc_runtime.checkpoints import CheckpointHeader, save_encoder
from hvc_runtime.devices import resolve_device
from hvc_runtime.distributed import DistContext, init_from_env, shutdown
from hvc_runtime.encoders import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
)
from hvc_runtime.errors import HvcError
from hvc_runtime.provenance import git_revision
from hvc_train.checkpointing import load_checkpoint, save_checkpoint
from hvc_train.config import TrainConfig, save_config
from hvc_train.data import (
    CropPairDataset,
    EpochSampler,
    FrameIndex,
    index_images,
    index_videos,
    merge,
)
from hvc_train.model import HVCNetwork, momentum_at
from hvc_train.validation import davis_jf, inference_trunk

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
ENCODER = "encoder.safetensors"
STATISTICS = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)
    skipped_images: int = 0
    checkpoint: Path | None = None
    encoder: Path | None = None
    images_per_second: float = 0.0
    validation: list[tuple[int, float]] = field(default_factory=list)  # (step, J&F)


def build_index(config: TrainConfig) -> FrameIndex:
    if not config.videos and not config.images:
        raise HvcError("no training data: give --videos and/or --images")
    parts = [index_videos(Path(v), config.video_split) for v in config.videos]
    parts += [index_images(Path(i)) for i in config.images]
    return merge(parts)


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    choice = config.amp
    if choice == "auto":
        choice = "fp16" if device.type == "cuda" else "none"
    return {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}[choice]


def _prepare_run_dir(run_dir: Path, resume: bool, force: bool) -> None:
    if resume:
        if not (run_dir / CHECKPOINT).is_file():
            raise HvcError(f"{run_dir}: nothing to resume (no {CHECKPOINT})")
        return
    if run_dir.is_dir() and any(run_dir.iterdir()) and not force:
        raise HvcError(
            f"{run_dir}: folder already holds a run; pass --resume to continue it or --force to replace it"
        )
    run_dir.mkdir(parents=True, exist_ok=True)


class Normalizer:
    """uint8 views on the device → normalised float batches (batched, not per sample)."""

    def __init__(self, name: str, device: torch.device, channels_last: bool) -> None:
        mean, std = STATISTICS[name]
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
        self.device = device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, views: torch.Tensor) -> torch.Tensor:
        x = views.to(self.device, non_blocking=True).float()
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)


def export_encoder(network: HVCNetwork, path: Path, config: TrainConfig, steps: int) -> Path:
    """The online trunk up to layer3 as a runtime checkpoint (safetensors + header)."""
    header = CheckpointHeader(
        training={
            "config": config.to_dict(),
            "steps": steps,
            "data": config.videos + config.images,
        },
        git_revision=git_revision(),
    )
    save_encoder(inference_trunk(network.online_encoder), path, header)
    return path


def train(
    config: TrainConfig,
    run_dir: Path,
    resume: bool = False,
    force: bool = False,
    show_progress: bool = True,
) -> TrainResult:
    """Train (or continue training) into `run_dir`; see `TrainConfig` for the knobs."""
    run_dir = Path(run_dir)
    device = resolve_device(config.device)
    context = init_from_env(device.type)
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
    try:
        index = build_index(config)  # bad data fails before the run folder is touched
        if context.is_main:
            _prepare_run_dir(run_dir, resume, force)
            save_config(config, run_dir / "config.json")
        if context.enabled:
            torch.distributed.barrier()
        return _train(config, index, run_dir, resume, device, context, show_progress)
    finally:
        shutdown(context)


def _train(
    config: TrainConfig,
    index: FrameIndex,
    run_dir: Path,
    resume: bool,
    device: torch.device,
    context: DistContext,
    show_progress: bool,
) -> TrainResult:
    torch.manual_seed(config.seed)
    sampler = EpochSampler(
        index, config.frames_per_video, config.seed, context.rank, context.world_size
    )
    dataset = CropPairDataset(
        index, config.seed, config.image_size, config.min_crop, config.max_crop
    )
    steps_per_epoch = -(-sampler.per_rank() // config.batch_size)
    schedule_steps = steps_per_epoch * config.epochs
    last_step = min(schedule_steps, config.max_steps or schedule_steps)

    network = HVCNetwork().to(device)
    if config.channels_last:
        network = network.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam([p for p in network.parameters() if p.requires_grad], lr=config.lr)
    amp_dtype = _amp_dtype(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    step, epoch, position = 0, 0, 0
    if resume:
        state = load_checkpoint(run_dir / CHECKPOINT)
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        step, epoch, position = state["step"], state["epoch"], state["position"]
        torch.set_rng_state(state["torch_rng"])
    model = DistributedDataParallel(network) if context.enabled else network
    if config.compile:
        model = torch.compile(model)
    normalize = Normalizer(config.normalization, device, config.channels_last)
    writer = _tensorboard(run_dir) if context.is_main else None
    result = TrainResult(steps=step)
    pending: list[torch.Tensor] = []
    started, seen = time.perf_counter(), 0

    def flush_losses() -> None:
        result.losses.extend(torch.stack(pending).float().cpu().tolist() if pending else [])
        pending.clear()

    def checkpoint() -> None:
        flush_losses()
        if not context.is_main:
            return
        save_checkpoint(
            run_dir / CHECKPOINT,
            {
                "model": network.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "step": step,
                "epoch": epoch,
                "position": position,
                "torch_rng": torch.get_rng_state(),
                "config": config.to_dict(),
            },
        )

    def validate() -> None:
        jf = davis_jf(
            network.online_encoder,
            Path(config.val_davis),
            config.val_split,
            config.val_size,
            device,
        )
        result.validation.append((step, jf))
        log.info("step %d: validation J&F %.3f", step, jf)
        if writer is not None:
            writer.add_scalar("val/J&F", jf, step)

    progress = _progress(show_progress and context.is_main)
    task = progress.add_task(
        "training", total=last_step, completed=step, loss=float("nan"), rate=0.0
    )
    with progress:
        while step < last_step:
            sampler.set_position(epoch, position)
            loader = DataLoader(
                dataset,
                batch_size=config.batch_size,
                sampler=sampler,
                num_workers=config.workers,
                pin_memory=device.type == "cuda",
                persistent_workers=False,
            )
            for view1, view2, box1, box2, skipped in loader:
                momentum = momentum_at(step, schedule_steps, config.momentum)
                network.update_target(momentum)
                with torch.autocast(
                    device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
                ):
                    terms = model(
                        normalize(view1),
                        normalize(view2),
                        box1.to(device),
                        box2.to(device),
                        config.pos_radius,
                        config.dynamic_sign,
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(terms.total).backward()
                scaler.step(optimizer)
                scaler.update()
                step += 1
                position += len(view1)
                seen += len(view1) * context.world_size
                result.skipped_images += int(skipped.sum())
                pending.append(terms.total.detach())
                if step % config.log_every == 0 or step == last_step:
                    rate = seen / (time.perf_counter() - started)
                    loss = float(pending[-1])
                    progress.update(task, completed=step, loss=loss, rate=rate)
                    if writer is not None:
                        for name, value in [
                            ("loss/total", loss),
                            ("loss/static", float(terms.static.detach())),
                            ("loss/dynamic", float(terms.dynamic.detach())),
                            ("positives_per_sample", float(terms.positives.detach())),
                            ("lr", optimizer.param_groups[0]["lr"]),
                            ("momentum", momentum),
                            ("images_per_second", rate),
                        ]:
                            writer.add_scalar(name, value, step)
                    flush_losses()
                if step % config.checkpoint_every == 0 and step < last_step:
                    checkpoint()
                if config.val_every and step % config.val_every == 0 and context.is_main:
                    validate()
                if step >= last_step:
                    break
            else:
                epoch, position = epoch + 1, 0
    checkpoint()
    validated_last = bool(result.validation) and result.validation[-1][0] == step
    if config.val_davis and context.is_main and not validated_last:
        validate()
    result.steps = step
    result.images_per_second = seen / max(time.perf_counter() - started, 1e-9)
    result.checkpoint = run_dir / CHECKPOINT
    if context.is_main:
        result.encoder = export_encoder(network, run_dir / ENCODER, config, step)
        if result.skipped_images:
            log.warning("skipped %d unreadable images", result.skipped_images)
    if writer is not None:
        writer.close()
    return result


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description} step {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.1f} img/s"),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning(
            "tensorboard is not installed; scalars are not logged (pip install tensorboard)"
        )
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))
