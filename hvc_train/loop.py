"""A training run: data → `Trainer` steps, with logging, health figures, validation and
checkpoints between steps; SIGINT/SIGTERM stop at a step boundary with a final checkpoint; the
inference encoder is exported at the end."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from hvc_runtime.encoder.network import StrideEightResNet
from hvc_runtime.utils.devices import resolve_device
from hvc_runtime.utils.distributed import (
    DistContext,
    init_from_env,
    rank_device,
    run_on_main,
    shutdown,
)
from hvc_runtime.utils.errors import HvcError, HvcWarning
from hvc_runtime.utils.interrupts import Interrupted, StopRequest, graceful_stop
from hvc_train.config import TrainConfig, save_config
from hvc_train.data import (
    BatchStream,
    CropPairDataset,
    FrameIndex,
    index_images,
    index_videos,
    merge,
)
from hvc_train.health import HealthFigures, Thresholds, probe_frames
from hvc_train.loss import LossTerms
from hvc_train.reporting import Reporter
from hvc_train.rundir import (
    CHECKPOINT,
    CONFIG,
    ENCODER,
    SNAPSHOTS,
    TENSORBOARD,
    check_run_folder,
    require_resumable,
    run_folder,
)
from hvc_train.trainer import Trainer
from hvc_train.worker_signals import start_workers, stop_signals_only_from

PROBE_FRAMES = 8  # frames of the fixed batch the health figures are measured on


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)
    skipped_images: int = 0
    checkpoint: Path | None = None
    encoder: Path | None = None
    images_per_second: float = 0.0
    validation: list[tuple[int, float]] = field(default_factory=list)  # (step, score 0-1)
    health: list[tuple[int, HealthFigures]] = field(default_factory=list)


@dataclass(frozen=True)
class HealthPoint:
    """What `train(on_health=...)` is told each time the health figures are measured: a caller
    can record them as they come (a run cut short keeps its trajectory) or measure the
    current online trunk on its own probe."""

    step: int
    figures: HealthFigures
    images_per_second: float  # since this process's first step (which pays one-off set-up)
    trunk: StrideEightResNet  # the online trunk itself (layer4 included), not a copy


def build_index(config: TrainConfig) -> FrameIndex:
    if not config.videos and not config.images:
        raise HvcError("no training data: the config sets neither videos nor images")
    parts = [index_videos(Path(v), config.video_split) for v in config.videos]
    parts += [index_images(Path(i)) for i in config.images]
    return merge(parts)


def train(
    config: TrainConfig,
    run_dir: Path,
    resume: bool = False,
    force: bool = False,
    show_progress: bool = True,
    on_health: Callable[[HealthPoint], None] | None = None,
) -> TrainResult:
    """Train (or continue training) into `run_dir`; see `TrainConfig` for the knobs.
    `on_health` is called on rank 0 after each health measurement.

    A first SIGINT/SIGTERM stops after the current step with a checkpoint and raises
    `Interrupted` saying where; a second one stops at once."""
    run_dir = Path(run_dir)
    device = resolve_device(config.device)
    context = init_from_env(device.type)
    device = rank_device(context, device)
    try:
        if resume:
            require_resumable(run_dir)  # before the data: the folder is what is wrong
        index = build_index(config)  # bad data fails before the folder is touched
        if not resume:  # every rank stops if rank 0 refuses the folder, none waits for it
            run_on_main(context, lambda: check_run_folder(run_dir, force))
        with run_folder(run_dir, resume, force, context):
            run_on_main(context, lambda: save_config(config, run_dir / CONFIG))
            loop = _RunLoop(config, index, run_dir, device, context, show_progress, on_health)
            return loop.run(resume)
    finally:
        shutdown(context)


def _next_batch(batches):
    """The next batch; an HvcError raised in a DataLoader worker comes back wrapped in the
    worker's traceback, and is reduced to its own one-line message again."""
    try:
        return next(batches)
    except HvcError as error:
        raise HvcError(str(error).strip().splitlines()[-1].split("HvcError: ")[-1]) from None


def _agreed_stop(stop: StopRequest, context: DistContext, device: torch.device) -> int | None:
    """The signal that asks this run to stop, if any; under torchrun all ranks agree, so they
    leave at the same step."""
    signum = stop.signum or 0
    if context.enabled:
        flag = torch.tensor([signum], device=device if device.type == "cuda" else "cpu")
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        signum = int(flag.item())
    return signum or None


class _RunLoop:
    """Steps until the last one; rank 0 logs, measures, validates and checkpoints between them."""

    def __init__(
        self,
        config: TrainConfig,
        index: FrameIndex,
        run_dir: Path,
        device: torch.device,
        context: DistContext,
        show_progress: bool,
        on_health: Callable[[HealthPoint], None] | None = None,
    ) -> None:
        self.config = config
        self.on_health = on_health
        self.data = list(config.videos) + list(config.images)
        self.run_dir = run_dir
        self.device = device
        self.context = context
        self.show = show_progress and context.is_main
        self.stream = BatchStream(
            index,
            config.frames_per_video,
            config.seed,
            config.batch_size,
            config.repeat,
            context.rank,
            context.world_size,
        )
        self.dataset = CropPairDataset(
            index,
            config.seed,
            config.image_size,
            config.min_crop,
            config.max_crop,
            config.color_jitter,
            config.grayscale,
        )
        schedule_steps = self.stream.steps_per_epoch() * config.epochs
        self.last_step = min(schedule_steps, config.max_steps or schedule_steps)
        self.trainer = Trainer(config, device, schedule_steps, self.stream.per_rank(), context)
        self.probe = (
            probe_frames(index.files, PROBE_FRAMES, config.image_size)
            if config.health_every and context.is_main
            else None
        )
        self.thresholds = Thresholds()
        self.result = TrainResult(steps=0)
        self.pending: list[torch.Tensor] = []  # losses not yet copied to the host
        self.checkpoint_path = run_dir / CHECKPOINT
        self.saved_step: int | None = None

    @property
    def step(self) -> int:
        return self.trainer.state.step

    def run(self, resume: bool) -> TrainResult:
        if resume:
            self.trainer.load_checkpoint(self.checkpoint_path)
            self.saved_step = self.step
        state = self.trainer.state
        self.stream.set_position(state.epoch, state.position)
        loader = DataLoader(
            self.dataset,
            batch_sampler=self.stream,
            num_workers=self.config.workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=stop_signals_only_from(os.getpid()),
        )  # iterated once for the whole run: its workers serve every epoch
        tensorboard = self.run_dir / TENSORBOARD if self.context.is_main else None
        reporter = Reporter(tensorboard, self.show, self.last_step, self.step)
        self.result.steps = self.step
        with reporter:
            try:
                with graceful_stop() as stop:
                    if self.probe is not None and self.step == 0:
                        self._health(reporter)
                    self._steps(start_workers(loader), reporter, stop)
            except Interrupted as interrupted:
                if interrupted.detail:
                    raise
                raise interrupted.with_detail(self._abrupt_stop()) from None
            self._finish(reporter)
        return self.result

    def _steps(self, batches, reporter: Reporter, stop: StopRequest) -> None:
        started, seen, first = time.perf_counter(), 0, True
        while self.step < self.last_step:
            view1, view2, box1, box2, skipped = _next_batch(batches)
            terms = self.trainer.train_step(view1, view2, box1, box2)
            seen += len(view1) * self.context.world_size
            self.result.skipped_images += int(skipped.sum())
            self.pending.append(terms.total.detach())
            rate = seen / max(time.perf_counter() - started, 1e-9)
            if first:  # the first step pays one-off set-up (workers, kernels): time from its end
                started, seen, first = time.perf_counter(), 0, False
            self.result.images_per_second = rate
            self._between_steps(terms, rate, reporter)
            signum = _agreed_stop(stop, self.context, self.device)
            if signum is not None:
                self._checkpoint()
                raise Interrupted(signum, self._graceful_stop())

    def _between_steps(self, terms: LossTerms, rate: float, reporter: Reporter) -> None:
        config, step, main = self.config, self.step, self.context.is_main
        if step % config.log_every == 0 or step == self.last_step:
            loss = float(self.pending[-1])
            reporter.progress(step, loss, rate)
            reporter.scalars(
                step,
                {
                    "loss/total": loss,
                    "loss/static": float(terms.static.detach()),
                    "loss/dynamic": float(terms.dynamic.detach()),
                    "positives_per_sample": float(terms.positives.detach()),
                    "lr": self.trainer.optimizer.param_groups[0]["lr"],
                    "momentum": self.trainer.momentum(),
                    "images_per_second": rate,
                },
            )
            self._flush_losses()
        if self.probe is not None and step % config.health_every == 0:
            self._health(reporter)
        if step % config.checkpoint_every == 0 and step < self.last_step:
            self._checkpoint()
        if config.val_every and step % config.val_every == 0 and main:
            self._validate(reporter)

    def _finish(self, reporter: Reporter) -> None:
        self._checkpoint()
        validated = bool(self.result.validation) and self.result.validation[-1][0] == self.step
        if self.config.val_davis and self.context.is_main and not validated:
            self._validate(reporter)
        self.result.steps = self.step
        self.result.checkpoint = self.checkpoint_path
        if self.context.is_main:
            self.result.encoder = self.trainer.export_encoder(self.run_dir / ENCODER, self.data)
            if self.result.skipped_images:
                warnings.warn(
                    f"skipped {self.result.skipped_images} unreadable images", HvcWarning, 2
                )

    def _flush_losses(self) -> None:
        if self.pending:
            self.result.losses.extend(torch.stack(self.pending).float().cpu().tolist())
            self.pending.clear()

    def _checkpoint(self) -> None:
        self._flush_losses()
        if self.context.is_main:
            self.trainer.save_checkpoint(self.checkpoint_path)
            snapshot = self.run_dir / SNAPSHOTS / f"step-{self.step:06d}.safetensors"
            self.trainer.export_encoder(snapshot, self.data)
        self.saved_step = self.step

    def _health(self, reporter: Reporter) -> None:
        figures = self.trainer.health(self.probe)
        self.result.health.append((self.step, figures))
        reporter.health(self.step, figures, self.thresholds.problems(figures))
        if self.on_health is not None:
            trunk = self.trainer.network.online_encoder
            self.on_health(HealthPoint(self.step, figures, self.result.images_per_second, trunk))

    def _validate(self, reporter: Reporter) -> None:
        score = self.trainer.validate()
        self.result.validation.append((self.step, score))
        name = "val/J&F" if self.config.val_metric == "jf" else "val/clip_iou"
        reporter.scalars(self.step, {name: score})

    def _graceful_stop(self) -> str:
        return (
            f"stopped after step {self.step} of {self.last_step}; checkpoint {self.checkpoint_path}"
        )

    def _abrupt_stop(self) -> str:
        if self.saved_step is None:
            return f"stopped at once during step {self.step + 1}; no checkpoint was written"
        return (
            f"stopped at once during step {self.step + 1}; the last checkpoint "
            f"{self.checkpoint_path} holds step {self.saved_step}"
        )
