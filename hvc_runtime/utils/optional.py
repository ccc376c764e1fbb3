"""Optional dependencies (onnx, onnxruntime, TensorRT), imported only where they are used."""

from __future__ import annotations

import importlib
from types import ModuleType

from hvc_runtime.utils.errors import HvcError


def require(module: str, hint: str) -> ModuleType:
    """Import `module`, or stop with the one-line `hint` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise HvcError(hint) from exc
