"""torchrun support: process group from the environment, rank-0-only side effects, and the
small object exchanges (shard results, rank-0 decisions) the commands need."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from hvc_runtime.utils.errors import HvcError

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device_type: str, timeout: timedelta | None = None) -> DistContext:
    """Join the process group torchrun describes (NCCL on CUDA, gloo otherwise).

    `timeout` bounds how long a collective waits for the other ranks (PyTorch's default is
    10 to 30 minutes, too short when ranks finish uneven shards of work)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timeout)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    return DistContext(dist.get_rank(), world_size, local_rank)


def rank_device(context: DistContext, device: torch.device) -> torch.device:
    """One GPU per process under torchrun: a CUDA device without an index means this rank's
    local GPU; an explicit index, or any other device, is kept."""
    if context.enabled and device.type == "cuda" and device.index is None:
        return torch.device("cuda", context.local_rank)
    return device


def shutdown(context: DistContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def gather_objects(context: DistContext, value):
    """Every process's `value`, in rank order (a one-item list without torchrun)."""
    if not context.enabled:
        return [value]
    gathered = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_from_main(context: DistContext, value):
    """Rank 0's `value` on every process."""
    if not context.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def run_on_main(context: DistContext, action: Callable[[], T]) -> T | None:
    """`action` on rank 0 only (None elsewhere). An HvcError it raises stops every rank, each
    with the message, so no rank waits at a collective for one that has already failed."""
    error: HvcError | None = None
    result = None
    if context.is_main:
        try:
            result = action()
        except HvcError as exc:
            error = exc
    message = broadcast_from_main(context, None if error is None else str(error))
    if error is not None:
        raise error
    if message is not None:
        raise HvcError(message)
    return result


@functools.cache
def _rendezvous_store() -> dist.TCPStore:
    """A client of the key-value store torchrun's rendezvous runs (MASTER_ADDR:MASTER_PORT)."""
    return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False)


class SharedCounter:
    """A count every process adds to and rank 0 reads while the others still work (progress of
    shared work), with no collective that would wait for them: kept in torchrun's rendezvous
    store, a plain number without torchrun. Keys must be unique to the run."""

    def __init__(self, context: DistContext, key: str) -> None:
        self.key = key
        self._store = _rendezvous_store() if context.enabled else None
        self._value = 0

    def add(self, amount: int) -> int:
        """Add `amount`; returns the count across all processes."""
        if self._store is None:
            self._value += amount
            return self._value
        return int(self._store.add(self.key, amount))

    def value(self) -> int:
        return self.add(0)
