"""The typed training configuration: a recipe's defaults, then a TOML/YAML file, then flags.

`TrainConfig()` is the project's default recipe, the official one in the default memory layout
(see `hvc_train.recipes`); `recipe = "official"` in a file, or `--recipe official`, pins the
official values explicitly. Every value is checked for
its type and range here, so a bad file or flag ends with one line naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hvc_runtime.utils.atomic import atomic_path
from hvc_runtime.utils.errors import HvcError, OptionError, excerpt


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as `config.json` in the run folder."""

    videos: list[str] = field(default_factory=list)  # DAVIS / YouTube-VOS roots
    video_split: str | None = None  # ImageSets list name (e.g. "train"); None: all videos
    images: list[str] = field(default_factory=list)  # trees of JPEG/PNG images
    repeat: int = 1  # each epoch passes over the data this many times (small datasets)
    image_size: int = 256
    batch_size: int = 128
    epochs: int = 20
    max_steps: int | None = None  # stop early; the EMA schedule still spans `epochs`
    frames_per_video: int = 80
    min_crop: float = 0.0  # crop area range, as a share of the image (official: U(0, 1))
    max_crop: float = 1.0
    color_jitter: float = 0.0  # brightness/contrast/saturation factors in [1-s, 1+s] (0: off)
    grayscale: float = 0.0  # probability that a view is turned grey
    lr: float = 1e-3  # official, constant
    warmup_steps: int = 0  # linear learning-rate warm-up from 0
    fixed_filter_means: bool = False  # hold each k×k trunk filter's mean at its initial value
    projector_layer: str = "layer4"  # trunk output the projector reads (official: layer4)
    pos_radius: float = 0.1  # official value (PixPro's own default is 0.7)
    dynamic_sign: float = 1.0  # official: reward +cos between forward and backward flows
    normalization: str = "cifar10"  # official training statistics (inference: ImageNet)
    momentum: float = 0.99
    amp: str = (
        "auto"  # auto (fp16 on CUDA, bf16 on CPUs with native bf16, else off), none, fp16, bf16
    )
    compile: bool = False
    channels_last: bool = False  # official default layout; see hvc_train.recipes
    deterministic: bool = True  # cuDNN deterministic algorithms, no benchmark (official)
    seed: int = 42
    workers: int = 4
    checkpoint_every: int = 500
    log_every: int = 10
    health_every: int = 100  # steps between representation-health figures; 0 disables
    device: str = "auto"
    val_davis: str | None = None  # DAVIS-format root to validate on
    val_split: str | None = "val"
    val_every: int = 0  # steps between validations; 0: only at the end
    val_metric: str = "proxy"  # proxy: quick IoU on clip starts; jf: full DAVIS J&F
    val_size: int | None = 240  # short side of validation frames (None: native)

    def __post_init__(self) -> None:
        choices = {
            "normalization": ("cifar10", "imagenet"),
            "amp": ("auto", "none", "fp16", "bf16"),
            "projector_layer": ("layer3", "layer4"),
            "val_metric": ("proxy", "jf"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise OptionError(key, getattr(self, key), f"choose one of {', '.join(allowed)}")
        at_least = {
            "repeat": 1,
            "batch_size": 1,
            "epochs": 1,
            "frames_per_video": 1,
            "image_size": 32,
            "workers": 0,
            "warmup_steps": 0,
            "checkpoint_every": 1,
            "log_every": 1,
            "health_every": 0,
            "val_every": 0,
        }
        for key, low in at_least.items():
            if getattr(self, key) < low:
                raise OptionError(key, getattr(self, key), f"must be at least {low}")
        if self.max_steps is not None and self.max_steps < 1:
            raise OptionError("max_steps", self.max_steps, "must be at least 1")
        if not 0 <= self.min_crop < self.max_crop <= 1:
            raise OptionError(
                "min_crop",
                self.min_crop,
                f"crop range up to max_crop {self.max_crop} not in [0, 1]",
            )
        for key in ("color_jitter", "grayscale"):
            if not 0 <= getattr(self, key) <= 1:
                raise OptionError(key, getattr(self, key), "must be within [0, 1]")
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise OptionError(item.name, value, "must be a finite number")
        if not 0 < self.lr <= 1:
            raise OptionError("lr", self.lr, "must be in (0, 1] (larger steps diverge at once)")
        if not 0 <= self.momentum <= 1:
            raise OptionError("momentum", self.momentum, "must be within [0, 1]")
        if self.pos_radius <= 0:
            raise OptionError("pos_radius", self.pos_radius, "must be > 0 (no pair is positive)")
        if self.val_size is not None and self.val_size < 8:
            raise OptionError("val_size", self.val_size, "must be at least 8 pixels")
        if self.val_every and not self.val_davis:
            raise OptionError("val_every", self.val_every, "needs val_davis (a DAVIS-format root)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


RECIPE_KEY = "recipe"  # a file key / flag that picks the defaults; not a config value itself
_TYPES = typing.get_type_hints(TrainConfig)
_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _check_value(key: str, value: Any) -> Any:
    """`value` as the field's type (ints pass as floats, a string as a one-item list), or
    OptionError naming what the key expects."""
    expected = _TYPES[key]
    options = typing.get_args(expected) if isinstance(expected, types.UnionType) else (expected,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
        if typing.get_origin(option) is list:
            if isinstance(value, str):
                return [value]
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return value
    names = [
        "a list of strings" if typing.get_origin(o) is list else _TYPE_NAMES.get(o, "empty")
        for o in options
    ]
    raise OptionError(key, value, f"must be {' or '.join(names)}")


def _read_file(path: Path) -> dict[str, Any]:
    """A TOML or YAML file's table, or one line naming the file and where it breaks."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise HvcError(f"{path}: cannot read config ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise HvcError(f"{path}: config is not UTF-8 text ({exc.reason})") from exc
    if path.suffix == ".toml":
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise HvcError(f"{path}: not valid TOML: {exc}") from None
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise HvcError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    else:
        raise HvcError(f"{path}: config must be .toml, .yaml or .yml")
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise HvcError(f"{path}: config must be a table of keys, got {type(values).__name__}")
    return values


def _yaml_problem(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _checked(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Known keys with values of the right type; a problem is named with `source`."""
    unknown = sorted(key for key in values if key not in _TYPES)
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(_TYPES), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        shown = [excerpt(key) for key in unknown[:3]]
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise HvcError(f"{source}: unknown config keys {shown}{more}{hint}")
    try:
        return {key: _check_value(key, value) for key, value in values.items()}
    except OptionError as error:
        raise _in_file(source, error) from None


def _in_file(source: str, error: OptionError) -> HvcError:
    """A bad value of a config file, named by file and key, quoted short."""
    return HvcError(f"{source}: {error.option} = {excerpt(repr(error.value))}: {error.message}")


def load_config(
    path: Path | None, overrides: dict[str, Any], base: dict[str, Any] | None = None
) -> TrainConfig:
    """Recipe defaults, then `base` (a resumed run's saved config), a TOML or YAML file, then
    `overrides` (flags; None means not given). A file's problems name the file and the key;
    a flag's problems are `OptionError`s, which a command line reports under its flag."""
    from hvc_train.recipes import recipe_values

    layers: list[tuple[str, dict[str, Any]]] = []
    if base:
        layers.append(("saved config", dict(base)))
    if path is not None:
        layers.append((str(path), _read_file(Path(path))))
    flags = {k: v for k, v in overrides.items() if v is not None}
    recipe = flags.pop(RECIPE_KEY, None)
    for _, values in reversed(layers):  # the file's recipe before a saved one
        named = values.pop(RECIPE_KEY, None)
        recipe = named if recipe is None else recipe
    origin: dict[str, str] = {}
    merged = recipe_values(recipe) if recipe is not None else {}
    for source, values in layers:
        merged.update(_checked(values, source))
        origin.update(dict.fromkeys(values, source))
    for key, value in flags.items():
        merged[key] = _check_value(key, value) if key in _TYPES else value
    try:
        return TrainConfig(**merged)
    except OptionError as error:
        if error.option in flags or error.option not in origin:
            raise
        raise _in_file(origin[error.option], error) from None


def save_config(config: TrainConfig, path: Path) -> None:
    """The resolved config, written atomically (`--resume` reads it back)."""
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    except OSError as exc:
        raise HvcError(f"{path}: cannot write the config ({exc.strerror})") from exc


def saved_config(run_dir: Path) -> dict[str, Any] | None:
    """The resolved config a run saved, so `--resume` needs no flags repeated."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HvcError(f"{path}: the run's saved config is not readable ({exc})") from None
    if not isinstance(values, dict):
        raise HvcError(f"{path}: the run's saved config is not a table of keys")
    return values
