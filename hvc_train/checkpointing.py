"""Training checkpoints: everything needed to continue exactly, written atomically.

A checkpoint is a plain dict of tensors, numbers and strings, so it loads with
`torch.load(weights_only=True)`; nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hvc_runtime.utils.atomic import atomic_path
from hvc_runtime.utils.errors import HvcError

FORMAT_VERSION = 1
ARCHITECTURE = "hvc-resnet18-s8-layer4"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    payload = {"format_version": FORMAT_VERSION, "architecture": ARCHITECTURE, **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise HvcError(f"{path}: no checkpoint to resume from") from exc
    except Exception as exc:
        raise HvcError(f"{path}: not a readable training checkpoint ({exc})") from exc
    if not isinstance(state, dict) or "format_version" not in state:
        raise HvcError(f"{path}: not an hvc training checkpoint")
    if state["format_version"] > FORMAT_VERSION:
        raise HvcError(
            f"{path}: checkpoint format {state['format_version']} is newer than this hvc "
            f"({FORMAT_VERSION}); upgrade hvc"
        )
    if state.get("architecture") != ARCHITECTURE:
        raise HvcError(
            f"{path}: checkpoint is for {state.get('architecture')!r}, this trainer builds {ARCHITECTURE}"
        )
    return state
