"""Label propagation: settings, the reference (official-semantics) and the fast implementation."""

from hvc_runtime.propagation.config import PropagationConfig
from hvc_runtime.propagation.fast import FastPropagator
from hvc_runtime.propagation.online import OnlinePropagator
from hvc_runtime.propagation.reference import ReferencePropagator

PROPAGATORS: dict[str, type[OnlinePropagator]] = {
    "fast": FastPropagator,
    "reference": ReferencePropagator,
}

__all__ = [
    "PROPAGATORS",
    "FastPropagator",
    "OnlinePropagator",
    "PropagationConfig",
    "ReferencePropagator",
]
