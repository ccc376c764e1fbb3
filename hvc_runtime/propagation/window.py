"""Local-window geometry: the official radius test, and query tiles with the key cells they see.

The fast propagator scores a tile of B×B query cells against the (B+2P)×(B+2P) key cells around
it (P = the largest offset inside the radius) with one matrix product, then masks what lies
outside each query's disk or outside the grid. No hw×hw mask is ever built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def within_radius(dy: torch.Tensor, dx: torch.Tensor, radius: float) -> torch.Tensor:
    """The official window test: Euclidean distance in cells strictly below the radius.

    Offsets are integers, so the test is `dy² + dx² ≤ n` for the largest integer n whose
    square root is below the radius: integer arithmetic on any device (MPS has no float64),
    no host round trip."""
    return dy**2 + dx**2 <= _largest_square_inside(radius)


def _largest_square_inside(radius: float) -> int:
    """The largest integer n with sqrt(n) < radius (-1 if none), by float64 square roots."""
    n = math.ceil(radius * radius)
    while n >= 0 and math.sqrt(n) >= radius:
        n -= 1
    while math.sqrt(n + 1) < radius:
        n += 1
    return n


def max_offset(radius: float) -> int:
    """Largest per-axis offset a key cell can have and still be inside the radius."""
    return max(0, math.ceil(radius) - 1)


@dataclass(frozen=True)
class TileWindows:
    """Index tensors for scoring a grid tile by tile (T tiles of B² queries, S keys each)."""

    height: int
    width: int
    tile: int
    margin: int
    padded_key_shape: tuple[int, int]  # the key grid zero-padded by `margin` (and to whole tiles)
    padded_query_shape: tuple[int, int]
    num_tiles: int
    key_cell: torch.Tensor  # [T, S] flat index into the real grid (0 outside it)
    outside: torch.Tensor  # [T, S, B²] key outside the grid or outside the query's disk
    query_slot: torch.Tensor  # [h*w] row of each real cell in the [T*B²] tile-major order
    # (key rows a0:a1, query columns q0:q1, key columns c0:c1 of the window's rows)
    row_bands: tuple[tuple[int, int, int, int, int, int], ...]
    disk_bound: torch.Tensor  # [1] int32: `disk_bound` of these windows, made once per video


def tile_windows(
    height: int, width: int, radius: float, tile: int, device: torch.device
) -> TileWindows:
    # a radius beyond the grid's diagonal reaches every cell, as the diagonal does; without
    # this bound a huge radius would size the window tiles by it and exhaust memory
    radius = min(radius, math.hypot(height, width) + 1)
    margin = max_offset(radius)
    tiles_y, tiles_x = -(-height // tile), -(-width // tile)
    side = tile + 2 * margin
    key_h, key_w = tiles_y * tile + 2 * margin, tiles_x * tile + 2 * margin
    ty = torch.arange(tiles_y, device=device).repeat_interleave(tiles_x)  # [T]
    tx = torch.arange(tiles_x, device=device).repeat(tiles_y)
    a = torch.arange(side, device=device).repeat_interleave(side)  # [S] row inside the window
    b = torch.arange(side, device=device).repeat(side)
    key_y = ty[:, None] * tile + a[None]  # padded coordinates [T, S]
    key_x = tx[:, None] * tile + b[None]
    real_y, real_x = key_y - margin, key_x - margin
    inside = (real_y >= 0) & (real_y < height) & (real_x >= 0) & (real_x < width)
    key_cell = torch.where(inside, real_y * width + real_x, 0)
    i = torch.arange(tile, device=device).repeat_interleave(tile)  # [B²] query row in the tile
    j = torch.arange(tile, device=device).repeat(tile)
    disk = within_radius(
        a[None] - margin - i[:, None], b[None] - margin - j[:, None], radius
    )  # [B², S], the same for every tile
    outside = (~(disk[None] & inside[:, None, :])).transpose(1, 2).contiguous()
    ys = torch.arange(height, device=device).repeat_interleave(width)
    xs = torch.arange(width, device=device).repeat(height)
    tile_of_cell = (ys // tile) * tiles_x + xs // tile
    query_slot = tile_of_cell * tile * tile + (ys % tile) * tile + xs % tile
    return TileWindows(
        height,
        width,
        tile,
        margin,
        (key_h, key_w),
        (tiles_y * tile, tiles_x * tile),
        len(ty),
        key_cell,
        outside,
        query_slot,
        row_bands(tile, margin, radius),
        disk_bound(outside, tile, margin),
    )


def disk_bound(outside: torch.Tensor, tile: int, margin: int) -> torch.Tensor:
    """The largest dy² + dx² of a query/key pair `outside` ([T, S, B²]) admits ([1] int32).

    `TileWindows` keeps the disk as a mask, and `dy² + dx² ≤ bound` selects exactly the same
    pairs inside the grid: every admitted pair is within the bound, and every pair within it is
    within the radius. Device ops only, so no host synchronisation."""
    side = tile + 2 * margin
    device = outside.device
    offset = torch.arange(side, device=device) - margin  # window cell minus query, per axis
    inside_tile = torch.arange(tile, device=device)
    dy = offset.repeat_interleave(side)[:, None] - inside_tile.repeat_interleave(tile)[None]
    dx = offset.repeat(side)[:, None] - inside_tile.repeat(tile)[None]  # [S, B²] like `outside`
    admitted = (~outside).any(0)
    return torch.where(admitted, dy**2 + dx**2, -1).amax().to(torch.int32).reshape(1)


def row_bands(
    tile: int, margin: int, radius: float
) -> tuple[tuple[int, int, int, int, int, int], ...]:
    """Which query rows of a tile each window key row can reach, and which of its key columns,
    grouped into bands.

    Key row a (0 ≤ a < B+2P) is within P rows of query rows max(0, a-2P)..min(B-1, a) only,
    and of those queries' disks only the columns within ±w of the tile's columns reach it (w:
    the widest half-chord of the disk at the row offsets from key row a to those rows).
    Scoring each band of key rows, those columns only (a contiguous run of a key row), against
    just those query rows (a contiguous block of the tile's B² columns) skips pairs outside
    every disk.
    """
    bound = _largest_square_inside(radius)
    bands: list[list[int]] = []
    for a in range(tile + 2 * margin):
        lo, hi = max(0, a - 2 * margin), min(tile - 1, a)
        room = max(bound - (a - margin - i) ** 2 for i in range(lo, hi + 1))
        if room < 0:  # no disk reaches this key row (a radius under one cell)
            continue
        reach = math.isqrt(room)
        first, last = max(0, margin - reach), min(tile + 2 * margin, margin + tile + reach)
        columns = [lo * tile, (hi + 1) * tile, first, last]
        if bands and bands[-1][2:] == columns and bands[-1][1] == a:
            bands[-1][1] = a + 1
        else:
            bands.append([a, a + 1, *columns])
    return tuple(tuple(band) for band in bands)
