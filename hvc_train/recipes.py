"""Named training recipes: the official one, which is also the default (`TrainConfig()`), and
`cpu`, the one chosen by measurement for a CPU.

A recipe is a set of config values applied before a file and flags, so `--recipe official`
reproduces the official code's choices and any key can still be changed on top of it.

The default is the official recipe: it is the only one with a GPU-measured result (the official
code's encoder lifted J&F on held-out DAVIS-2016 val videos from 38.6 to 60.4 after 2,296 steps
on the DAVIS-2016 train videos). Other recipes were compared only on CPU, for 100 steps, where
they did not separate (39.6 / 40.1 / 39.7 clip IoU, ±3 noise); `python -m
benchmarks.training_recipes` is the comparison to run on a GPU before changing it.

Memory layout: the official code trains in PyTorch's default (contiguous) layout; it never sets
a memory format. Channels-last (`channels_last = true`) is an option only: with channels-last
input, cuDNN BatchNorm in training mode takes its SPATIAL_PERSISTENT path (range-limited;
PyTorch stopped using it for the default layout after accuracy problems), in every BatchNorm of
every network. The one GPU run of this recipe in channels-last collapsed where the official
code, at the same budget, learned; whether the layout is the cause is what
`benchmarks/gpu/cause.py` measures.
"""

from __future__ import annotations

from typing import Any

from hvc_runtime.utils.errors import OptionError

# The official code's values (method description §2, `train_vos.py`, `core/config.py`) for
# every key a recipe may change: CIFAR-10 statistics, crop area U(0, 1), no colour
# augmentation, a constant learning rate of 1e-3, the projector on layer4, the default memory
# layout (`model.to(device)`), deterministic cuDNN without benchmarking, seed 42.
OFFICIAL: dict[str, Any] = {
    "normalization": "cifar10",
    "min_crop": 0.0,
    "max_crop": 1.0,
    "color_jitter": 0.0,
    "grayscale": 0.0,
    "lr": 1e-3,
    "warmup_steps": 0,
    "fixed_filter_means": False,
    "projector_layer": "layer4",
    "channels_last": False,
    "deterministic": True,
    "seed": 42,
}
# The official objective at the scale of a 2-core CPU, chosen by dev J&F at equal CPU time
# (docs/training.md, "Recipes at equal CPU time"): the projector on layer3, so training skips
# layer4 (about 70% of the trunk's training cost at stride 8, and a layer inference never runs),
# with the saving spent on 192-pixel crops; batch 32, bf16 autocast where the CPU computes it
# natively (`amp = "auto"`), channels-last (the BatchNorm concern is a cuDNN one), one data
# worker (decoding is a few per cent of a step), an encoder kept every 50 steps. 90 epochs
# (2,970 steps on the DAVIS-2016 train videos) span the EMA schedule; a run is meant to be
# stopped and continued (`--resume`). The packaged default encoder comes from it.
CPU: dict[str, Any] = {
    **OFFICIAL,
    "image_size": 192,
    "batch_size": 32,
    "epochs": 90,
    "projector_layer": "layer3",
    "amp": "auto",
    "channels_last": True,
    "workers": 1,
    "checkpoint_every": 50,
}
# `default` is `TrainConfig()`, whose values are the official ones (a test holds them equal);
# `official` names them explicitly, so a run asking for it keeps them if the default changes.
RECIPES: dict[str, dict[str, Any]] = {"default": {}, "official": OFFICIAL, "cpu": CPU}


def recipe_values(name: str) -> dict[str, Any]:
    """The config values of recipe `name` (a copy; `default` is `TrainConfig()` itself)."""
    if name not in RECIPES:
        raise OptionError("recipe", name, f"choose one of {', '.join(RECIPES)}")
    return dict(RECIPES[name])
