"""Label propagation: settings and the reference (official-semantics) implementation."""

from hvc_runtime.propagation.config import PropagationConfig
from hvc_runtime.propagation.reference import ReferencePropagator

__all__ = ["PropagationConfig", "ReferencePropagator"]
