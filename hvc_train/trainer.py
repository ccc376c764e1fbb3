"""One training run's moving parts: the network, its optimiser and loss scaler, and where the
run stands (`TrainState`). What a checkpoint saves and what resume loads sit side by side, so
continuing a run is the same object in the same state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from hvc_runtime.encoder.checkpoints import CheckpointHeader, save_encoder
from hvc_runtime.encoder.network import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD
from hvc_runtime.utils.devices import cpu_has_native_bf16
from hvc_runtime.utils.distributed import DistContext
from hvc_runtime.utils.provenance import git_revision
from hvc_train.checkpointing import load_checkpoint, save_checkpoint
from hvc_train.config import TrainConfig
from hvc_train.health import HealthFigures, measure, spatial_convs
from hvc_train.loss import LossTerms
from hvc_train.model import HVCNetwork, momentum_at
from hvc_train.validation import VALIDATORS, inference_trunk

RESIDUAL = ("layer1", "layer2", "layer3", "layer4")  # the stages whose filter means may be held
STATISTICS = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}


@dataclass
class TrainState:
    """Steps done, and this rank's next sample: position `position` of epoch `epoch`."""

    step: int = 0
    epoch: int = 0
    position: int = 0

    def advance(self, samples: int, per_epoch: int) -> None:
        self.step += 1
        self.position += samples
        if self.position >= per_epoch:
            self.epoch, self.position = self.epoch + 1, 0


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


def amp_dtype(choice: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: `auto` is fp16 on CUDA, bf16 on a CPU with native bf16 (about twice
    the fp32 rate there), and none elsewhere."""
    if choice == "auto":
        if device.type == "cuda":
            choice = "fp16"
        else:
            choice = "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "none"
    return {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}[choice]


class Trainer:
    """Online/target network, Adam, the AMP scaler and the run's `TrainState`.

    `schedule_steps` spans the EMA momentum schedule (all epochs); `samples_per_epoch` is this
    rank's share of an epoch, which tells `TrainState` when an epoch ends.
    """

    def __init__(
        self,
        config: TrainConfig,
        device: torch.device,
        schedule_steps: int,
        samples_per_epoch: int,
        context: DistContext | None = None,
    ) -> None:
        self.config = config
        self.device = device
        self.schedule_steps = schedule_steps
        self.samples_per_epoch = samples_per_epoch
        torch.backends.cudnn.deterministic = config.deterministic
        torch.backends.cudnn.benchmark = False
        torch.manual_seed(config.seed)
        self.network = HVCNetwork(config.projector_layer).to(device)
        if config.channels_last:
            self.network = self.network.to(memory_format=torch.channels_last)
        self.initial_weights = {  # the health figures measure the drift from these
            name: weight.detach().clone()
            for name, weight in spatial_convs(self.network.online_encoder).items()
        }
        self.filter_means = {  # held fixed after every step when fixed_filter_means is set
            name: weight.detach().mean((1, 2, 3), keepdim=True)
            for name, weight in spatial_convs(self.network.online_encoder, RESIDUAL).items()
            if config.fixed_filter_means
        }
        trainable = [p for p in self.network.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=config.lr)
        self.amp_dtype = amp_dtype(config.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.state = TrainState()
        distributed = context is not None and context.enabled
        self.model = DistributedDataParallel(self.network) if distributed else self.network
        if config.compile:
            self.model = torch.compile(self.model)
        self.normalize = Normalizer(config.normalization, device, config.channels_last)

    def save_checkpoint(self, path: Path) -> None:
        """Everything `load_checkpoint` needs to continue exactly, written atomically."""
        save_checkpoint(
            path,
            {
                "model": self.network.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "step": self.state.step,
                "epoch": self.state.epoch,
                "position": self.state.position,
                "torch_rng": torch.get_rng_state(),
                "config": self.config.to_dict(),
            },
        )

    def load_checkpoint(self, path: Path) -> None:
        saved = load_checkpoint(path)
        self.network.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scaler.load_state_dict(saved["scaler"])
        self.state = TrainState(saved["step"], saved["epoch"], saved["position"])
        if self.state.position >= self.samples_per_epoch:  # saved at the end of an epoch
            self.state = TrainState(self.state.step, self.state.epoch + 1, 0)
        torch.set_rng_state(saved["torch_rng"])

    def learning_rate(self) -> float:
        """The configured rate, ramped linearly over the first `warmup_steps` steps."""
        warmup = self.config.warmup_steps
        scale = min(1.0, (self.state.step + 1) / warmup) if warmup else 1.0
        return self.config.lr * scale

    def momentum(self) -> float:
        return momentum_at(self.state.step, self.schedule_steps, self.config.momentum)

    def train_step(self, view1, view2, box1, box2) -> LossTerms:
        """One Adam step on a batch of uint8 view pairs and their boxes; advances the state."""
        self.network.update_target(self.momentum())
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        dtype = self.amp_dtype or torch.float32
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.amp_dtype is not None):
            terms = self.model(
                self.normalize(view1),
                self.normalize(view2),
                box1.to(self.device),
                box2.to(self.device),
                self.config.pos_radius,
                self.config.dynamic_sign,
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms.total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._hold_filter_means()
        self.state.advance(len(view1), self.samples_per_epoch)
        return terms

    @torch.no_grad()
    def _hold_filter_means(self) -> None:
        """Undo the step's change of each held filter's mean over (in, k, k). The objective's
        gradient puts ~50 times more of its energy there than chance (a flat, blurring
        component), and Adam's normalised steps let it pile up from the first steps on."""
        weights = dict(self.network.online_encoder.named_parameters())
        for name, mean in self.filter_means.items():
            weight = weights[name]
            weight.sub_(weight.mean((1, 2, 3), keepdim=True) - mean)

    def validate(self) -> float:
        """The configured validation score (0-1) of the current online trunk."""
        config = self.config
        score = VALIDATORS[config.val_metric]
        return score(
            self.network.online_encoder,
            Path(config.val_davis),
            config.val_split,
            config.val_size,
            self.device,
        )

    def health(self, probe: torch.Tensor) -> HealthFigures:
        """Health figures of the online trunk on a fixed uint8 batch of frames."""
        return measure(self.network.online_encoder, self.normalize(probe), self.initial_weights)

    def export_encoder(self, path: Path, data: list[str]) -> Path:
        """The online trunk up to layer3 as a runtime checkpoint (safetensors + header)."""
        header = CheckpointHeader(
            training={"config": self.config.to_dict(), "steps": self.state.step, "data": data},
            git_revision=git_revision(),
        )
        save_encoder(inference_trunk(self.network.online_encoder), path, header)
        return path
