"""Scoring and top-k fused in one Triton kernel: no score ever reaches memory.

`fast.windowed_topk` materialises every windowed score (about 290 million per frame at 480p)
and ranks them with a dozen launches per tile group; `fast.long_term_topk` materialises a
[chunk, hw] block per step. Here one program takes one tile of queries and a share of the
context frames. For each frame it streams the key cells of the tile's window that lie inside
the grid (the whole grid for the long-term frame) in chunks of BK, scores them against the
tile's queries with `tl.dot` (fp32 accumulation; IEEE fp32 products for fp32 features), masks
what lies outside each query's disk, and merges the chunk into each query's running top-KP,
kept in registers. Memory traffic: the keys once per tile (at most (B+2P)² · U · D), the queries
once per program when D fits one dot (else once per chunk, from cache), and the [hw, KP] result.

Ranking needs (value, index) pairs and Triton sorts plain tensors, so a candidate is one int64:
an order-preserving integer image of its fp32 score above its flat index. Integer order is
score order (exact ties by index) and no candidate is lost or duplicated. A chunk is merged by
insertion: while a query's best remaining chunk candidate beats the minimum of its list, it
replaces that minimum. Once lists fill up, many chunks need no round at all and most others
a few (never more than KP), far cheaper than sorting; the lists are ordered once at the end.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from hvc_runtime.propagation.ranking import expand_multiplicity
from hvc_runtime.propagation.window import TileWindows
from hvc_runtime.utils.devices import device_ints

_KEYS_PER_CHUNK = 64  # BK: key cells scored per step
_ONE_DOT_BYTES = 512  # key rows up to this size are scored by one tl.dot (D = 256 in fp16)
_DIM_CHUNK_BYTES = 128  # BD for longer rows: 64 fp16 or 32 fp32 channels per tl.dot
_MIN_DOT = 16  # tl.dot needs every block dimension to be at least 16
_LONG_TERM_QUERIES = (64, 32)  # queries per long-term program: the first that fills the GPU
_NUM_WARPS = 8
# one-dot rows: load the next chunk's keys before ranking the current one, by hand, since the
# insertion loop inside the chunk loop keeps Triton's pipeliner off it. sm_90, ptxas: fp16
# 256-d 128 -> 170 registers a thread with Triton 3.8 (two programs per SM -> one), 148 -> 198
# with 3.6 (one either way); the trade is unmeasured on a GPU: the GPU run settles it
_PREFETCH_KEYS = True
# programs of 8 warps an SM holds before the first launch tells (`_occupancy`), by feature
# element size: sm_90 compiles (ptxas, no spills) of Triton 3.8 take 169 registers a thread in
# fp32 (one program) and 124-128 in fp16/bf16 (two); Triton 3.6 takes 148 in fp16 (one)
PROGRAMS_PER_SM = {4: 1, 2: 1}
_SM_REGISTERS, _SM_SHARED = 65536, 228 * 1024  # sm_90, when the device does not say
_occupancy: dict[tuple[int, int, bool], int] = {}  # (element size, D, disk) -> programs per SM


def _packed_minus_inf() -> int:
    """`_pack(-inf, 0)`: below every real candidate; masked scores and empty places hold it."""
    bits = struct.unpack("<i", struct.pack("<f", float("-inf")))[0]
    return (bits ^ 0x7FFFFFFF) << 32


_MINUS_INF = tl.constexpr(_packed_minus_inf())


class _Geometry(NamedTuple):
    """How `_topk_kernel` walks the grid: query tiles, the window around them, frame groups."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    margin: int  # key cells seen beyond the tile on every side
    groups: int  # programs sharing each tile's frames


@triton.jit
def _pack(score, flat):
    """int64 whose signed order is the fp32 score order, ties broken by the flat index."""
    bits = score.to(tl.int32, bitcast=True)
    key = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negative floats: reverse the magnitude order
    return (key.to(tl.int64) << 32) | flat.to(tl.int64)


@triton.jit
def _unpack(packed):
    """The fp32 score and flat index `_pack` stored."""
    key = (packed >> 32).to(tl.int32)
    bits = key ^ ((key >> 31) & 0x7FFFFFFF)
    return bits.to(tl.float32, bitcast=True), packed.to(tl.int32)


@triton.jit
def _key_chunk(
    s0, top, left, columns, cells, slot_row, key_stride_y, key_stride_x, BK: tl.constexpr
):
    """Window cells s0..s0+BK-1 of a frame: their rows and columns, validity, and key row
    offsets (channel 0)."""
    s = s0 + tl.arange(0, BK)
    key_ok = s < cells
    ky, kx = top + s // columns, left + s % columns
    key_row = ky.to(tl.int64) * key_stride_y + kx.to(tl.int64) * key_stride_x + slot_row
    return ky, kx, key_ok, key_row


@triton.jit
def _queries(query_ptr, query_cell, query_ok, positions, d0, DIM: tl.constexpr, BD: tl.constexpr):
    """Channels d0..d0+BD-1 of the tile's queries [BQ, BD] (zeros past DIM add nothing)."""
    d = d0 + tl.arange(0, BD)
    mask = query_ok[:, None] & (d < DIM)[None, :]
    return tl.load(query_ptr + d[None, :] * positions + query_cell[:, None], mask=mask, other=0.0)


@triton.jit
def _keys(keys_ptr, key_row, key_ok, key_stride_d, d0, DIM: tl.constexpr, BD: tl.constexpr):
    """Channels d0..d0+BD-1 of the key rows [BK, BD] (zeros past DIM or the window)."""
    d = d0 + tl.arange(0, BD)
    mask = key_ok[:, None] & (d < DIM)[None, :]
    offsets = key_row[:, None] + d.to(tl.int64)[None, :] * key_stride_d
    return tl.load(keys_ptr + offsets, mask=mask, other=0.0)


@triton.jit
def _dot(acc, q, keys, UPCAST: tl.constexpr):
    """acc + q · keysᵀ in fp32. UPCAST: the interpreter's tl.dot multiplies bf16 bit patterns as
    integers, so there bf16 goes through fp32 (exact products)."""
    if UPCAST:
        q, keys = q.to(tl.float32), keys.to(tl.float32)
    return tl.dot(q, tl.trans(keys), acc, input_precision="ieee", out_dtype=tl.float32)


@triton.jit
def _insert(running, packed, rounds):
    """`rounds` times, each query's best remaining chunk candidate replaces the minimum of its
    running list ([BQ, KP]) if it beats it.

    Exact once `rounds` ≥ min(KP, candidates above the minimum): candidates leave in descending
    order, so those that belong to the merged top-KP come first and all get in. Entries of
    `running` are distinct, so exactly one is replaced."""
    for _ in range(rounds):
        best = tl.max(packed, axis=1)
        kth = tl.min(running, axis=1)
        replace = (running == kth[:, None]) & (best > kth)[:, None]
        running = tl.where(replace, best[:, None], running)
        packed = tl.where(packed == best[:, None], _MINUS_INF, packed)
    return running


@triton.jit
def _descending(running, KP: tl.constexpr):
    """The running lists ([BQ, KP], any order) sorted, best first: KP extractions."""
    column = tl.arange(0, KP)[None, :]
    ordered = running
    for j in range(KP):
        best = tl.max(running, axis=1)
        ordered = tl.where(column == j, best[:, None], ordered)
        running = tl.where(running == best[:, None], _MINUS_INF, running)
    return ordered


@triton.jit(do_not_specialize=["num_active"])  # 1, 2-15, 16·n frames: one compiled kernel
def _topk_kernel(
    query_ptr,  # [D, hw]
    keys_ptr,  # real cell (0, 0) of slot 0; cell (y, x) of slot u, channel d at the strides
    active_ptr,  # [A] int32: the slots whose frame is in the context
    disk_ptr,  # [1] int32: a key is in a query's disk when dy² + dx² ≤ this (if DISK)
    values_ptr,  # [G, hw, KP] fp32, descending
    flat_ptr,  # [G, hw, KP] int64: slot · hw + cell
    height,
    width,
    margin,  # the window reaches this many cells beyond the tile on every side
    key_stride_y,
    key_stride_x,
    key_stride_slot,
    key_stride_d,
    num_active,
    tiles_x,
    DIM: tl.constexpr,
    TILE_H: tl.constexpr,
    TILE_W: tl.constexpr,
    BQ: tl.constexpr,
    BK: tl.constexpr,
    BD: tl.constexpr,
    KP: tl.constexpr,
    DISK: tl.constexpr,
    UPCAST: tl.constexpr,
    PREFETCH: tl.constexpr,
):
    """One query tile (program axis 0) against the frames of one frame group (axis 1)."""
    tile_id = tl.program_id(0)
    group = tl.program_id(1)
    groups = tl.num_programs(1)
    positions = height * width
    y0 = (tile_id // tiles_x) * TILE_H  # the tile's first row and column
    x0 = (tile_id % tiles_x) * TILE_W

    q = tl.arange(0, BQ)
    qy, qx = y0 + q // TILE_W, x0 + q % TILE_W
    query_ok = (q < TILE_H * TILE_W) & (qy < height) & (qx < width)
    query_cell = qy * width + qx

    # the window's key cells inside the grid: rows top..bottom-1, columns left..right-1
    top, bottom = tl.maximum(y0 - margin, 0), tl.minimum(y0 + TILE_H + margin, height)
    left, right = tl.maximum(x0 - margin, 0), tl.minimum(x0 + TILE_W + margin, width)
    columns = right - left
    cells = (bottom - top) * columns

    # distinct placeholders (-inf, 0..KP-1), so that `_insert` replaces exactly one entry
    running = tl.zeros([BQ, KP], tl.int64) + (tl.arange(0, KP).to(tl.int64) + _MINUS_INF)[None, :]
    zeros = tl.zeros([BQ, BK], dtype=tl.float32)
    if PREFETCH:  # one dot per chunk: the queries once per program
        q = _queries(query_ptr, query_cell, query_ok, positions, 0, DIM, BD)
    for f in range(group, num_active, groups):
        slot = tl.load(active_ptr + f)
        slot_row = slot.to(tl.int64) * key_stride_slot
        if PREFETCH:  # the first chunk's keys; every step loads the next chunk's before it ranks
            _, _, key_ok, key_row = _key_chunk(
                0, top, left, columns, cells, slot_row, key_stride_y, key_stride_x, BK
            )
            keys = _keys(keys_ptr, key_row, key_ok, key_stride_d, 0, DIM, BD)
        for s0 in range(0, cells, BK):
            ky, kx, key_ok, key_row = _key_chunk(
                s0, top, left, columns, cells, slot_row, key_stride_y, key_stride_x, BK
            )
            if PREFETCH:
                current = keys
                _, _, next_ok, next_row = _key_chunk(
                    s0 + BK, top, left, columns, cells, slot_row, key_stride_y, key_stride_x, BK
                )
                keys = _keys(keys_ptr, next_row, next_ok, key_stride_d, 0, DIM, BD)
                scores = _dot(zeros, q, current, UPCAST)
            else:
                scores = zeros
                for d0 in range(0, DIM, BD):
                    chunk = _keys(keys_ptr, key_row, key_ok, key_stride_d, d0, DIM, BD)
                    queries = _queries(query_ptr, query_cell, query_ok, positions, d0, DIM, BD)
                    scores = _dot(scores, queries, chunk, UPCAST)
            ok = key_ok[None, :]
            if DISK:
                dy, dx = ky[None, :] - qy[:, None], kx[None, :] - qx[:, None]
                ok = ok & (dy * dy + dx * dx <= tl.load(disk_ptr))
            flat = slot * positions + ky * width + kx
            packed = tl.where(ok, _pack(scores, flat[None, :]), _MINUS_INF)
            kth = tl.min(running, axis=1)  # each query's current KP-th candidate
            beating = tl.sum((packed > kth[:, None]).to(tl.int32), axis=1)
            running = _insert(running, packed, tl.minimum(tl.max(beating), KP))

    values, flat_out = _unpack(_descending(running, KP))
    flat_out = tl.where(values == float("-inf"), 0, flat_out)  # placeholders: a valid index
    out = (group * positions + query_cell)[:, None] * KP + tl.arange(0, KP)[None, :]
    tl.store(values_ptr + out, values, mask=query_ok[:, None])
    tl.store(flat_ptr + out, flat_out.to(tl.int64), mask=query_ok[:, None])


_INTERPRETED = not isinstance(_topk_kernel, triton.runtime.JITFunction)


def _interpreter_loop_bounds_from_scalars() -> None:
    """Let loops whose bounds are kernel scalars run in Triton's interpreter before 3.8.

    The interpreter holds a scalar as a one-element array and, before 3.8 (3.6 seen), turns it
    into a `range` bound with `int(array)`, which NumPy 2.4 rejects ("only 0-dimensional arrays
    can be converted to Python scalars"); 3.8 squeezes first. Compiled kernels never take this
    path (their loops are scf.for with device bounds), so only interpreted runs are patched."""
    from triton.runtime import interpreter

    version = tuple(int(part) for part in triton.__version__.split(".")[:2])
    if version >= (3, 8) or getattr(interpreter._patch_lang_tensor, "squeezes", False):
        return
    patch_tensor = interpreter._patch_lang_tensor

    def squeezing(tensor, scope) -> None:
        patch_tensor(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.item()))

    squeezing.squeezes = True
    interpreter._patch_lang_tensor = squeezing


if _INTERPRETED:
    _interpreter_loop_bounds_from_scalars()


def triton_windowed_topk(
    query: torch.Tensor,
    slots: torch.Tensor,
    multiplicity: list[int],
    windows: TileWindows,
    k: int,
    frame_groups: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`fast.windowed_topk` in one fused kernel: joint top-k ([hw, k] each), duplicates expanded.

    Same arguments and result, except that scores are ranked and returned in fp32 for every
    feature dtype (tensor-core products of fp16/bf16 features accumulate in fp32 and are never
    rounded back), and that the optional last argument sets how many programs share each
    tile's frames instead of how many tiles one step scores."""
    values, flat = unique_windowed_topk(query, slots, multiplicity, windows, k, frame_groups)
    counts = device_ints(tuple(multiplicity), torch.long, slots.device)
    return expand_multiplicity(values, flat, counts[flat // query.shape[1]], k)


def unique_windowed_topk(
    query: torch.Tensor,
    slots: torch.Tensor,
    multiplicity: list[int],
    windows: TileWindows,
    k: int,
    frame_groups: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top unique candidates per query before duplicates are expanded ([hw, k'] each).

    Values are fp32, descending, -inf where fewer than k' candidates exist; flat indices are
    slot · hw + cell (int64). k' = min(k, window cells · slots), as in `windowed_topk`.
    `frame_groups` programs share each tile's frames (None: enough to fill the GPU)."""
    positions = query.shape[1]
    height, width, tile, margin = windows.height, windows.width, windows.tile, windows.margin
    frames = slots.shape[2]
    if frames * positions >= 2**31:
        raise ValueError(f"{frames} slots of {positions} cells overflow int32 flat indices")
    side = tile + 2 * margin
    unique_k = min(k, side * side * frames)
    active = [slot for slot, count in enumerate(multiplicity) if count > 0]
    slots_free = _program_slots(slots.device, (slots.dtype.itemsize, query.shape[0], True))
    groups = frame_groups or _frame_groups(slots_free, windows.num_tiles, len(active))
    groups = max(1, min(groups, len(active)))
    keys = slots[margin:, margin:]  # real cell (0, 0) first: [≥h, ≥w, U, D]
    return _launch(
        query,
        keys,
        keys.stride(),
        device_ints(tuple(active), torch.int32, slots.device),
        windows.disk_bound,
        _Geometry(height, width, tile, tile, margin, groups),
        unique_k,
    )


def triton_long_term_topk(
    query: torch.Tensor, rows: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`fast.long_term_topk` fused: top-k' fp32 scores [hw, k'] and key cells of every query
    ([D, hw]) against a whole frame given channel-last (`rows`: [hw, D], the frame's features
    transposed and made contiguous once per reference frame, so key rows load as the slots'
    do), k' = min(k, hw). The grid is scanned as one row."""
    positions = rows.shape[0]
    key = (rows.dtype.itemsize, query.shape[0], False)
    tile = _long_term_tile(_program_slots(rows.device, key), positions)
    return _launch(
        query,
        rows,
        (0, rows.stride(0), 0, 1),  # (y, x, slot, channel)
        device_ints((0,), torch.int32, rows.device),  # the only slot
        None,
        _Geometry(1, positions, 1, tile, margin=positions, groups=1),
        min(k, positions),
    )


def _launch(
    query: torch.Tensor,
    keys: torch.Tensor,
    key_strides: tuple[int, ...],
    active: torch.Tensor,
    disk: torch.Tensor | None,
    grid: _Geometry,
    unique_k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `_topk_kernel` and merge the frame groups' lists ([hw, unique_k] each).

    disk: the `disk_bound`, or None to admit every key cell."""
    if query.dtype != keys.dtype:
        raise ValueError(f"query is {query.dtype} but the keys are {keys.dtype}")
    dim, positions = query.shape
    meta = kernel_meta(dim, unique_k, grid.tile_h, grid.tile_w, keys.dtype)
    values = torch.empty(grid.groups, positions, meta["KP"], device=keys.device)
    flat = torch.empty(values.shape, dtype=torch.long, device=keys.device)
    tiles_x = -(-grid.width // grid.tile_w)
    tiles = -(-grid.height // grid.tile_h) * tiles_x
    kernel = _topk_kernel[(tiles, grid.groups)](
        query.contiguous(),
        keys,
        active,
        active if disk is None else disk,  # not read without a disk
        values,
        flat,
        grid.height,
        grid.width,
        grid.margin,
        *key_strides,
        len(active),
        tiles_x,
        DISK=disk is not None,
        **meta,
        num_warps=_NUM_WARPS,
    )
    key = (keys.dtype.itemsize, dim, disk is not None)
    if (
        keys.is_cuda
        and key not in _occupancy
        and (found := launched_occupancy(kernel, keys.device))
    ):
        _occupancy[key] = found
    if grid.groups == 1:
        return values[0, :, :unique_k], flat[0, :, :unique_k]
    top = values.permute(1, 0, 2).reshape(positions, -1).topk(unique_k, dim=1)
    return top.values, flat.permute(1, 0, 2).reshape(positions, -1).gather(1, top.indices)


def kernel_meta(
    dim: int, unique_k: int, tile_h: int, tile_w: int, dtype: torch.dtype
) -> dict[str, int | bool]:
    """The kernel's compile-time parameters but DISK (blocks: powers of two, dot blocks ≥ 16).

    Key rows up to `_ONE_DOT_BYTES` are scored in one dot (queries loaded once per program);
    longer ones in chunks of `_DIM_CHUNK_BYTES`, which keeps registers and shared memory small."""
    kp = triton.next_power_of_2(unique_k)
    whole = triton.next_power_of_2(dim)
    element_size = dtype.itemsize
    one_dot = whole * element_size <= _ONE_DOT_BYTES
    return {
        "DIM": dim,
        "TILE_H": tile_h,
        "TILE_W": tile_w,
        "BQ": max(_MIN_DOT, triton.next_power_of_2(tile_h * tile_w)),
        "BK": max(_KEYS_PER_CHUNK, kp),
        "BD": max(_MIN_DOT, whole if one_dot else _DIM_CHUNK_BYTES // element_size),
        "KP": kp,
        "UPCAST": _INTERPRETED and dtype == torch.bfloat16,
        "PREFETCH": one_dot and _PREFETCH_KEYS,
    }


def programs_per_sm(
    registers: int, shared: int, sm_registers: int = _SM_REGISTERS, sm_shared: int = _SM_SHARED
) -> int:
    """Programs of `_NUM_WARPS` warps an SM holds with these registers a thread and bytes of
    shared memory a program (registers are allocated 8 a thread at a time); at least 1."""
    by_registers = sm_registers // (-(-registers // 8) * 8 * 32 * _NUM_WARPS)
    by_shared = sm_shared // shared if shared else by_registers
    return max(1, min(by_registers, by_shared))


def launched_occupancy(kernel, device: torch.device) -> int | None:
    """`programs_per_sm` of a launched kernel on `device`, from what its binary uses (the
    registers differ between Triton versions); None where Triton does not say."""
    registers = getattr(kernel, "n_regs", 0)
    if not registers:
        return None
    properties = torch.cuda.get_device_properties(device)
    return programs_per_sm(
        registers,
        getattr(getattr(kernel, "metadata", None), "shared", 0),
        getattr(properties, "regs_per_multiprocessor", _SM_REGISTERS),
        getattr(properties, "shared_memory_per_multiprocessor", _SM_SHARED),
    )


def _program_slots(device: torch.device, key: tuple[int, int, bool]) -> int:
    """Programs the GPU runs at once for the kernel variant `key` (element size, D, disk):
    SMs × what its first launch showed, or `PROGRAMS_PER_SM` before (CPU: 1)."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return sms * _occupancy.get(key, PROGRAMS_PER_SM.get(key[0], 1))


def _frame_groups(program_slots: int, tiles: int, frames: int) -> int:
    """Frame groups per tile: as many as one wave of `program_slots` programs holds (at most
    one per frame). More would only add a tail wave and lists to merge, as 4 per SM did."""
    return max(1, min(frames, program_slots // tiles))


def _long_term_tile(program_slots: int, positions: int) -> int:
    """Queries per long-term program: the widest of `_LONG_TERM_QUERIES` with the shortest
    estimated run (waves × queries per program): at 480p, 6,480 cells make 101 programs of
    64, fewer than an H100 holds, and 203 of 32 fill it."""

    def run(width: int) -> int:
        programs = -(-positions // width)
        return -(-programs // program_slots) * width

    return min(_LONG_TERM_QUERIES, key=run)
