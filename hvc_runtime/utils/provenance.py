"""Where an artifact or a measurement came from: the code revision and library versions."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import torch

LIBRARIES = (
    "hvc",
    "torch",
    "torchvision",
    "numpy",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "onnxruntime-gpu",
    "tensorrt",
    "triton",
)


def git_revision() -> str:
    """The commit of the hvc checkout; outside one, `HVC_COMMIT` (a tree copied to a GPU
    machine travels without .git, so its caller names the commit), else "unknown"."""
    try:
        done = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        done = None
    found = done.stdout.strip() if done is not None and done.returncode == 0 else ""
    return found or os.environ.get("HVC_COMMIT", "").strip() or "unknown"


def library_versions(names: Iterable[str] = LIBRARIES) -> dict[str, str]:
    """Installed versions of the given distributions (missing ones are left out)."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    if "torch" in found:
        found["torch"] = torch.__version__  # keeps the build tag, e.g. +cu130
    return found
