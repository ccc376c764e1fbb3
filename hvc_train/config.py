"""The typed training configuration: defaults are the official recipe; files and flags override."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hvc_runtime.errors import HvcError


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as `config.json` in the run folder."""

    videos: list[str] = field(default_factory=list)  # DAVIS / YouTube-VOS roots
    video_split: str | None = None  # ImageSets list name (e.g. "train"); None: all videos
    images: list[str] = field(default_factory=list)  # trees of JPEG/PNG images
    image_size: int = 256
    batch_size: int = 128
    epochs: int = 20
    max_steps: int | None = None  # stop early; the EMA schedule still spans `epochs`
    frames_per_video: int = 80
    min_crop: float = 0.0
    max_crop: float = 1.0
    lr: float = 1e-3
    pos_radius: float = 0.1  # official value (PixPro's own default is 0.7)
    dynamic_sign: float = 1.0  # official: reward +cos between forward and backward flows
    normalization: str = "cifar10"  # official training statistics; "imagenet" matches inference
    momentum: float = 0.99
    amp: str = "auto"  # auto (fp16 on CUDA, off on CPU), none, fp16, bf16
    compile: bool = False
    channels_last: bool = True
    seed: int = 42
    workers: int = 4
    checkpoint_every: int = 500
    log_every: int = 10
    device: str = "auto"
    val_davis: str | None = None  # DAVIS-format root to validate on (reference propagation)
    val_split: str | None = "val"
    val_every: int = 0  # steps between validations; 0 disables
    val_size: int | None = 240  # short side of validation frames (None: native)

    def __post_init__(self) -> None:
        if self.normalization not in ("cifar10", "imagenet"):
            raise HvcError(f"normalization must be cifar10 or imagenet, got {self.normalization!r}")
        if self.amp not in ("auto", "none", "fp16", "bf16"):
            raise HvcError(f"amp must be auto, none, fp16 or bf16, got {self.amp!r}")
        if self.batch_size < 1 or self.image_size < 32 or self.epochs < 1:
            raise HvcError("batch_size ≥ 1, image_size ≥ 32 and epochs ≥ 1 are required")
        if self.val_every and not self.val_davis:
            raise HvcError("val_every needs val_davis (a DAVIS-format folder)")
        if not 0 <= self.min_crop < self.max_crop <= 1:
            raise HvcError(
                f"crop scale range [{self.min_crop}, {self.max_crop}] is not within [0, 1]"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(
    path: Path | None, overrides: dict[str, Any], base: dict[str, Any] | None = None
) -> TrainConfig:
    """Defaults, then `base` (a resumed run's saved config), a TOML or YAML file, then flags."""
    values: dict[str, Any] = dict(base or {})
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise HvcError(f"{path}: cannot read config ({exc.strerror})") from exc
        if path.suffix == ".toml":
            values.update(tomllib.loads(text))
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            values.update(yaml.safe_load(text) or {})
        else:
            raise HvcError(f"{path}: config must be .toml, .yaml or .yml")
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise HvcError(f"{path or 'flags'}: unknown config keys {unknown}")
    return TrainConfig(**values)


def save_config(config: TrainConfig, path: Path) -> None:
    path.write_text(json.dumps(config.to_dict(), indent=2) + "\n")


def saved_config(run_dir: Path) -> dict[str, Any] | None:
    """The resolved config a run saved, so `--resume` needs no flags repeated."""
    path = Path(run_dir) / "config.json"
    return json.loads(path.read_text()) if path.is_file() else None
