"""Fast label propagation: the reference's masks without the dense affinity.

The reference scores every query against every cell of 51 context slots and ranks 327,420
candidates per query at 480p. Most of that is thrown away: short-term slots only count inside
the radius, and early in a video most slots are copies of the reference frame. Here

- each unique context frame is scored once and a frame filling m short-term slots brings its
  multiplicity m into the ranking: the joint top-k of the reference's duplicated layout is the
  top-k of unique candidates, each repeated m times, cut at k;
- short-term frames are scored only around each query: a tile of B×B queries against the
  (B+2P)² key cells around it in every frame at once (`slots.SlotMemory` makes that a strided
  view), masked to each query's disk; the long-term slot is scored over the whole frame;
- the two top-k lists are merged into the joint top-k.

Scores are ranked in the same dtype as the dense reference's (`PropagationConfig.score_dtype`:
fp32 by default, also for fp16/bf16 features), so only exact ties can be ordered differently
(and, in half precision, the two matrix products may sum in another order). Two kernels do the
windowed and long-term scoring: plain PyTorch, which runs wherever PyTorch does, and a fused
Triton kernel (`triton_window`) that never writes a score to memory; `kernel="auto"` takes
Triton for CUDA tensors where it is installed and ranks in fp32.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

from hvc_runtime.propagation.config import PropagationConfig
from hvc_runtime.propagation.numerics import fast_score_matmul, score_matmul
from hvc_runtime.propagation.online import OnlinePropagator
from hvc_runtime.propagation.ranking import expand_multiplicity
from hvc_runtime.propagation.slots import SlotMemory, SlotStore
from hvc_runtime.propagation.window import TileWindows, tile_windows
from hvc_runtime.utils.devices import device_ints
from hvc_runtime.utils.errors import HvcWarning, OptionError

_CHUNK_BYTES = 128 * 2**20
DEFAULT_TILE = 8
KERNELS = ("auto", "torch", "triton")
TRITON_INSTALLED = importlib.util.find_spec("triton") is not None  # looked up once, not per frame


class FastPropagator(OnlinePropagator):
    """Local-window, deduplicated top-k propagation; same semantics as `DensePropagator`."""

    def __init__(
        self,
        config: PropagationConfig = PropagationConfig(),
        *,
        tile: int = DEFAULT_TILE,
        tile_group: int | None = None,
        kernel: str = "auto",
    ) -> None:
        """`tile`: query tile side B; `tile_group`: tiles the PyTorch kernel scores per step
        (None: by device; the Triton kernel sizes its own launches); `kernel`: auto, torch or
        triton (see the module doc)."""
        if tile < 1 or (tile_group is not None and tile_group < 1):
            raise OptionError("tile", (tile, tile_group), "tile and tile_group must be >= 1")
        if kernel not in KERNELS:
            raise OptionError("kernel", kernel, f"choose one of {', '.join(KERNELS)}")
        if kernel == "triton" and not config.fp32_scores:
            raise OptionError(
                "kernel", kernel, "the Triton kernel ranks in fp32; fp32_scores is off"
            )
        self.tile = tile
        self.tile_group = tile_group
        self.kernel = kernel
        self._triton_failed = False
        super().__init__(config)

    def reset(self) -> None:
        super().reset()
        self._windows: TileWindows | None = None
        self._store: SlotStore | None = None
        self._long_term_rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _new_memory(self, frame: int, channels: torch.Tensor) -> SlotMemory:
        if self._windows is None:
            height, width = self.grid
            self._windows = tile_windows(
                height, width, self.config.radius, self.tile, channels.device
            )
        if self._store is None:
            capacity = max(1, self.config.context_size)
            self._store = SlotStore(self._windows, capacity)
        return SlotMemory(frame, channels, store=self._store)

    def uses_triton(self, query: torch.Tensor) -> bool:
        """Whether the fused Triton kernel scores this query (it ranks in fp32 only)."""
        if self.kernel != "auto":
            return self.kernel == "triton"
        fp32_ranking = self.config.score_dtype(query.dtype) == torch.float32
        return query.is_cuda and fp32_ranking and not self._triton_failed and TRITON_INSTALLED

    def _predict(self, ref: SlotMemory, query: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        positions = query.shape[1]
        context = cfg.context_indices(ref.frame, self.t)
        k = min(cfg.topk, len(context) * positions)
        slot_tensor = ref.store.features
        frame_in_slot = {slot: frame for frame, slot in ref.held_slots().items()}
        counts = Counter(context[1:])
        multiplicity = [
            counts.get(frame_in_slot.get(s, -1), 0) for s in range(slot_tensor.shape[2])
        ]
        values, cells = self._joint_topk(
            query, ref.features[ref.frame], slot_tensor, multiplicity, k
        )
        weights = torch.softmax((values / cfg.temperature).float(), dim=-1)
        empty = torch.zeros_like(ref.labels[ref.frame])
        by_slot = [
            ref.labels[frame_in_slot[s]] if s in frame_in_slot else empty
            for s in range(slot_tensor.shape[2])
        ]
        labels = torch.cat([ref.labels[ref.frame], *by_slot], dim=1)
        return weighted_labels(labels, cells, weights)

    def _joint_topk(self, query, reference, slots, multiplicity, k):
        """Top-k over the long-term frame and the short-term slots: [hw, k] values and cells
        (long-term cells first, then slot·hw + cell). With `kernel="auto"`, a Triton kernel that
        fails to build on this GPU is reported once and replaced by the PyTorch path."""
        if self.uses_triton(query):
            try:
                return self._merge(
                    query, *self._triton_topk(query, reference, slots, multiplicity, k), k
                )
            except Exception as exc:  # Triton raises its own types for compile failures
                if self.kernel == "triton":
                    raise
                self._triton_failed = True
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                warnings.warn(
                    f"the fused Triton kernel failed here ({first}); using the PyTorch kernels",
                    HvcWarning,
                    stacklevel=2,
                )
        dtype = self.config.score_dtype(query.dtype)
        long_term = long_term_topk(query, reference, k, dtype)
        windowed = (
            windowed_topk(query, slots, multiplicity, self._windows, k, self.tile_group, dtype)
            if any(multiplicity)
            else None
        )
        return self._merge(query, long_term, windowed, k)

    def _triton_topk(self, query, reference, slots, multiplicity, k):
        from hvc_runtime.propagation import triton_window  # needs triton: imported on use

        # the reference frame channel-last, made once per reference (the entry holds the frame,
        # so its id cannot be reused by another tensor while cached)
        if id(reference) not in self._long_term_rows:
            self._long_term_rows[id(reference)] = (reference, reference.T.contiguous())
        _, rows = self._long_term_rows[id(reference)]
        long_term = triton_window.triton_long_term_topk(query, rows, k)
        if not any(multiplicity):
            return long_term, None
        windowed = triton_window.triton_windowed_topk(query, slots, multiplicity, self._windows, k)
        return long_term, windowed

    @staticmethod
    def _merge(query, long_term, windowed, k):
        """The joint top-k of the long-term and short-term lists (slot cells after the frame)."""
        values, cells = long_term
        if windowed is None:
            return values, cells
        local_values, local_cells = windowed
        values = torch.cat([values, local_values], 1)
        cells = torch.cat([cells, local_cells + query.shape[1]], 1)
        values, pick = values.topk(k, dim=1)
        return values, cells.gather(1, pick)


def long_term_topk(
    query: torch.Tensor, keys: torch.Tensor, k: int, dtype: torch.dtype | None = None
):
    """Top-k scores [hw, k'] (in `dtype`, default the features') and key cells of every query
    against a whole frame ([D, hw] each)."""
    positions = query.shape[1]
    k = min(k, keys.shape[1])
    dtype = dtype or query.dtype
    chunk = max(1, _CHUNK_BYTES // (keys.shape[1] * dtype.itemsize))
    values, cells = [], []
    for start in range(0, positions, chunk):
        top = fast_score_matmul(query[:, start : start + chunk].T, keys, dtype).topk(k, dim=1)
        values.append(top.values)
        cells.append(top.indices)
    return torch.cat(values), torch.cat(cells)


def windowed_topk(
    query: torch.Tensor,
    slots: torch.Tensor,
    multiplicity: list[int],
    windows: TileWindows,
    k: int,
    group: int | None = None,
    dtype: torch.dtype | None = None,
):
    """Joint top-k over the short-term slots inside each query's window, duplicates expanded.

    query: [D, hw]; slots: [Hk, Wk, U, D] (`SlotStore.features`); multiplicity: for each of
    the U slots, how many short-term slots of the official layout its frame fills (0: not in
    the context; a host list, so no device synchronisation is needed to test for zeros).
    Returns values [hw, k] (in `dtype`, default the features') and flat indices slot·hw +
    cell. Keys outside the window or the grid score -inf; they only surface when fewer than k
    real candidates exist, and then weigh nothing, as the reference's -1e10 entries. `group`
    tiles are scored per step (default: one on CPU, as many as fit in 128 MB elsewhere). On a
    CPU the tiles are shared out between as many threads as PyTorch has, each on one core.
    """
    dtype = dtype or query.dtype
    dim, positions = query.shape
    tile = windows.tile
    frames = slots.shape[2]
    side = tile + 2 * windows.margin
    tiles = query_tiles(query, windows)
    any_absent = 0 in multiplicity
    multiplicity = device_ints(tuple(multiplicity), torch.long, slots.device)
    absent = (multiplicity == 0)[None, None, :, None]
    cells = side * side
    unique_k = min(k, cells * frames)
    cells_k = min(k, cells)
    values = slots.new_empty(windows.num_tiles, unique_k, tile * tile, dtype=dtype)
    index = torch.empty(values.shape, dtype=torch.long, device=slots.device)
    if group is None:  # CPUs: one tile at a time, no copies; GPUs: fewer, larger launches
        per_tile = side * side * frames * (dim + tile * tile) * dtype.itemsize
        group = 1 if slots.device.type == "cpu" else max(1, _CHUNK_BYTES // per_tile)
    # autograd's in-place writes into `values` are not thread-safe: a graph is built on one thread
    graph = torch.is_grad_enabled() and (slots.requires_grad or tiles.requires_grad)
    workers = torch.get_num_threads() if slots.device.type == "cpu" and not graph else 1

    def rank(first: int, last: int) -> None:
        for start in range(first, last, group):
            stop = min(start + group, last)
            scores = _tile_scores(slots, tiles, windows, start, stop, dtype).view(
                stop - start, cells, frames, -1
            )
            if any_absent:
                scores.masked_fill_(absent, float("-inf"))
            # two-stage top-k: only the k window cells with the best score over all frames can
            # hold a top-k candidate, so rank cells first, then the frames of those cells
            outside = windows.outside[start:stop]
            best = scores.amax(2).masked_fill_(outside, float("-inf"))
            top_cells = best.topk(cells_k, dim=1).indices  # [G, cells_k, B²]
            picked = scores.gather(1, top_cells[:, :, None, :].expand(-1, -1, frames, -1))
            picked.masked_fill_(outside.gather(1, top_cells)[:, :, None, :], float("-inf"))
            top = picked.view(stop - start, -1, tile * tile).topk(unique_k, dim=1)
            window_cell = top_cells.gather(1, top.indices // frames)
            values[start:stop] = top.values
            index[start:stop] = window_cell * frames + top.indices % frames

    if workers > 1:  # CPUs: a share of the tiles per core; small GEMMs scale poorly within one
        split_between_cores(rank, windows.num_tiles, workers)
    else:
        rank(0, windows.num_tiles)
    slot = windows.query_slot
    values = values.permute(0, 2, 1).reshape(-1, unique_k)[slot]  # [hw, k], sorted
    index = index.permute(0, 2, 1).reshape(-1, unique_k)[slot]
    frame, window_cell = index % frames, index // frames
    tile_of_query = slot // (tile * tile)
    cell = windows.key_cell[tile_of_query[:, None], window_cell]
    return expand_multiplicity(values, frame * positions + cell, multiplicity[frame], k)


def query_tiles(query: torch.Tensor, windows: TileWindows) -> torch.Tensor:
    """The queries [D, hw] as tiles [T, D, B²], the grid zero-padded to whole tiles."""
    dim, tile = query.shape[0], windows.tile
    query_h, query_w = windows.padded_query_shape
    grid = F.pad(
        query.view(dim, windows.height, windows.width),
        (0, query_w - windows.width, 0, query_h - windows.height),
    )
    return (
        grid.view(dim, query_h // tile, tile, query_w // tile, tile)
        .permute(1, 3, 0, 2, 4)
        .reshape(windows.num_tiles, dim, tile * tile)
    )


def split_between_cores(work: Callable[[int, int], None], count: int, workers: int) -> None:
    """`work(first, last)` over shares of range(count), each share on a thread of its own that
    runs one intra-op thread.

    Grad and inference modes are per thread: each worker takes the caller's."""
    bounds = [count * w // workers for w in range(workers + 1)]
    modes = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def share(first: int, last: int) -> None:
        torch.set_num_threads(1)  # this thread's own setting; the caller's stays as it is
        with torch.inference_mode(modes[0]), torch.set_grad_enabled(modes[1]):
            work(first, last)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(share, bounds[:-1], bounds[1:]))


def _tile_scores(
    slots: torch.Tensor,
    tiles: torch.Tensor,
    windows: TileWindows,
    start: int,
    stop: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Scores [G, B+2P, (B+2P)·U, B²] of tiles start..stop against the keys around them.

    One tile is scored in place, key row by key row (`key_row_scores`): whatever the entries
    it skips hold is masked with `outside` before it can be selected. Several tiles are copied
    into one batch and scored whole.
    """
    frames, side = slots.shape[2], windows.tile + 2 * windows.margin
    if stop - start > 1:
        regions = torch.stack([_key_region(slots, windows, n) for n in range(start, stop)])
        return score_matmul(regions, tiles[start:stop, None], dtype)
    scores = slots.new_empty(1, side, side * frames, windows.tile**2, dtype=dtype)
    for a, q0, q1, k0, k1, block in key_row_scores(slots, tiles, windows, start, dtype):
        scores[0, a, k0:k1, q0:q1] = block
    return scores


def key_row_scores(
    slots: torch.Tensor, tiles: torch.Tensor, windows: TileWindows, number: int, dtype
) -> Iterator[tuple[int, int, int, int, int, torch.Tensor]]:
    """Tile `number`'s queries scored against its window one key row at a time: (a, q0, q1,
    k0, k1, scores [k1-k0, q1-q0]) of key row a's entries k0:k1 (cell·U + frame) against the
    tile's query columns q0:q1.

    Each key row of the window is one dense matrix (a strided view of the slot tensor), scored
    only against the query rows of its band and in the key columns they reach (`row_bands`):
    pairs outside every disk are skipped."""
    keys, query_rows = _key_region(slots, windows, number), tiles[number].T.contiguous()
    frames = slots.shape[2]
    for a0, a1, q0, q1, c0, c1 in windows.row_bands:
        band = query_rows[q0:q1].T  # a view whose transpose is dense: no copy per row
        for a in range(a0, a1):
            block = fast_score_matmul(keys[a, c0 * frames : c1 * frames], band, dtype)
            yield a, q0, q1, c0 * frames, c1 * frames, block


def _key_region(slots: torch.Tensor, windows: TileWindows, number: int) -> torch.Tensor:
    """The key cells around tile `number`, [B+2P, (B+2P)·U, D]: a strided view of the slots."""
    _, key_w, frames, dim = slots.shape
    tile, side = windows.tile, windows.tile + 2 * windows.margin
    ty, tx = divmod(number, windows.padded_query_shape[1] // tile)
    return slots.as_strided(
        (side, side * frames, dim),
        (key_w * frames * dim, dim, 1),
        slots.storage_offset() + (ty * tile * key_w + tx * tile) * frames * dim,
    )


def weighted_labels(labels: torch.Tensor, flat: torch.Tensor, weights: torch.Tensor):
    """Σ_k weight·label over the chosen candidates; labels [C, N], flat/weights [hw, k] → [C, hw]."""
    positions, k = flat.shape
    chunk = max(1, _CHUNK_BYTES // (max(labels.shape[0], 1) * k * 4))
    out = torch.empty(labels.shape[0], positions, dtype=torch.float32, device=labels.device)
    for start in range(0, positions, chunk):
        stop = start + chunk
        out[:, start:stop] = (labels[:, flat[start:stop]] * weights[start:stop]).sum(-1)
    return out
