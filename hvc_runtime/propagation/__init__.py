"""Label propagation: settings, the dense (official-semantics) and the fast implementation."""

from hvc_runtime.propagation.config import PropagationConfig
from hvc_runtime.propagation.dense import DensePropagator
from hvc_runtime.propagation.fast import FastPropagator
from hvc_runtime.propagation.online import OnlinePropagator

# the modes users choose: "reference" is the dense official computation everything is checked
# against, "fast" gives the same masks without the dense affinity
PROPAGATORS: dict[str, type[OnlinePropagator]] = {
    "fast": FastPropagator,
    "reference": DensePropagator,
}

__all__ = [
    "PROPAGATORS",
    "DensePropagator",
    "FastPropagator",
    "OnlinePropagator",
    "PropagationConfig",
]
