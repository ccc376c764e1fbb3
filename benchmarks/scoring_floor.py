"""The floor under fast propagation on this machine: what its matrix products alone cost.

    python -m benchmarks.scoring_floor --size 480p --dim 256 --context 50 --threads 2 \\
        --out benchmarks/runs/cpu-480p-column-bands/floor

For one frame at full context (distinct frames: the most work), per score precision, the median
of `--runs` timings with the same threads, side by side:

- *fast step*: `FastPropagator.step`, everything (the latency benchmark's propagation row);
- *products as issued*: the same frame's matrix products and nothing else: the windowed
  scoring's key-row GEMMs exactly as the fast mode issues them (`fast.key_row_scores`, tiles
  shared between the cores as it shares them, results dropped) and the long-term frame's
  product;
- *disk floor*: the multiply-adds the method needs (each query against the cells of its
  radius disk in every short-term frame, and against the whole long-term frame), at the rate of
  one large GEMM of the same precision on this machine: what a perfect disk-shaped kernel
  could reach if it scored at large-GEMM speed and ranked for free.

Scoring in fp32 is what gives the reference's masks; bf16 rows show the rate a lower-precision
mode could reach. Writes floor.json and floor.md with the machine and the commit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import torch
import typer

from benchmarks.cases import feature_setting, frame_size, steady_state_propagator
from benchmarks.environment import describe
from benchmarks.measure import time_call
from hvc_runtime.encoder.network import feature_size
from hvc_runtime.encoder.precision import DTYPES
from hvc_runtime.propagation import PropagationConfig
from hvc_runtime.propagation.fast import key_row_scores, query_tiles, split_between_cores
from hvc_runtime.propagation.numerics import fast_score_matmul
from hvc_runtime.propagation.window import TileWindows
from hvc_runtime.utils.atomic import atomic_path

app = typer.Typer(add_completion=False)
_CPU = torch.device("cpu")
LARGE_GEMMS = (1024, 1536, 2048)  # M = N of large GEMMs; the fastest gives the rate


def issued_flops(windows: TileWindows, frames: int, dim: int, positions: int) -> int:
    """Multiply-adds ×2 of the fast mode's products: key rows × query bands, and long-term."""
    bands = windows.row_bands
    per_tile = sum((a1 - a0) * (q1 - q0) * (c1 - c0) for a0, a1, q0, q1, c0, c1 in bands)
    return 2 * dim * (windows.num_tiles * per_tile * frames + positions * positions)


def disk_flops(windows: TileWindows, context: int, dim: int, positions: int) -> int:
    """Multiply-adds ×2 the method needs: every real query against its disk's real cells in
    each of the `context` short-term frames, and against every cell of the long-term frame."""
    inside = ~windows.outside.transpose(1, 2).reshape(-1, windows.outside.shape[1])
    pairs = int(inside[windows.query_slot].sum())
    return 2 * dim * (pairs * context + positions * positions)


def products_as_issued(propagator, query: torch.Tensor, dtype: torch.dtype, threads: int):
    """A callable that runs the frame's matrix products as the fast mode issues them."""
    reference = propagator.references[0]
    slots, windows = reference.store.features, reference.store.windows
    flat = query.reshape(query.shape[0], -1)  # [D, hw]
    tiles = query_tiles(flat, windows)
    long_term = reference.features[reference.frame]

    def windowed(first: int, last: int) -> None:
        for number in range(first, last):
            for _ in key_row_scores(slots, tiles, windows, number, dtype):
                pass

    def run() -> None:
        split_between_cores(windowed, windows.num_tiles, threads)
        fast_score_matmul(flat.T, long_term, dtype)

    return run, windows, slots.shape[2]


def large_gemm_rate(dtype: torch.dtype, dim: int, runs: int) -> float:
    """The best GFLOP/s of large M×dim by dim×M GEMMs in `dtype`, through the fast mode's
    products (oneDNN fp32, native bf16)."""
    generator = torch.Generator().manual_seed(0)
    rates = []
    for side in LARGE_GEMMS:
        a, b = torch.randn(2, side, dim, generator=generator).to(dtype)
        timing = time_call(lambda a=a, b=b: fast_score_matmul(a, b.T, dtype), _CPU, 1, runs)
        rates.append(2 * side * side * dim / timing.median_ms / 1e6)
    return max(rates)


def floor_row(size: str, dim: int, context: int, features: str, threads: int, runs: int):
    precision, fp32_scores = feature_setting(features)
    config = PropagationConfig(context_size=context, fp32_scores=fp32_scores)
    grid = feature_size(*frame_size(size))
    propagator, query = steady_state_propagator(config, dim, grid, _CPU, "fast", DTYPES[precision])
    dtype = config.score_dtype(query.dtype)
    with torch.inference_mode():
        step = time_call(lambda: propagator.step(query), _CPU, 1, runs)
        products, windows, frames = products_as_issued(propagator, query, dtype, threads)
        issued = time_call(products, _CPU, 1, runs)
        rate = large_gemm_rate(dtype, dim, runs)
    positions = grid[0] * grid[1]
    needed = disk_flops(windows, context, dim, positions)
    done = issued_flops(windows, frames, dim, positions)
    return {
        "features": features,
        "score_dtype": str(dtype).removeprefix("torch."),
        "threads": threads,
        "size": size,
        "dim": dim,
        "context": f"1+{context}",
        "fast_step_ms": step.median_ms,
        "products_as_issued_ms": issued.median_ms,
        "products_as_issued_gflop": done / 1e9,
        "products_as_issued_gflops": done / issued.median_ms / 1e6,
        "disk_gflop": needed / 1e9,
        "large_gemm_gflops": rate,
        "disk_floor_ms": needed / rate / 1e6,
    }


def markdown(rows: list[dict], env: dict) -> str:
    lines = [
        f"Measured on **{env['device_name']}** ({env['cpu_threads']} CPU threads), torch "
        f"{env['versions']['torch']}, git {env['git_revision'][:10]}. One frame at full "
        "context; medians. *Products as issued*: the fast mode's GEMMs alone (key rows by "
        "query bands, and the long-term frame), results dropped. *Disk floor*: the "
        "multiply-adds the radius disks and the long-term frame need, at the best rate of "
        "large GEMMs of the same precision.",
        "",
        "| scores | threads | size | dim | context | fast step ms | products as issued ms "
        "| their GFLOP | their GFLOP/s | disk GFLOP | large GEMM GFLOP/s | disk floor ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['score_dtype']} | {r['threads']} | {r['size']} | {r['dim']} | {r['context']} "
            f"| {r['fast_step_ms']:.0f} | {r['products_as_issued_ms']:.0f} "
            f"| {r['products_as_issued_gflop']:.1f} | {r['products_as_issued_gflops']:.0f} "
            f"| {r['disk_gflop']:.1f} | {r['large_gemm_gflops']:.0f} | {r['disk_floor_ms']:.0f} |"
        )
    return "\n".join(lines) + "\n"


@app.command()
def main(
    size: Annotated[str, typer.Option(help="480p, 720p, 1080p or HEIGHTxWIDTH.")] = "480p",
    dim: Annotated[int, typer.Option(help="Feature dim.")] = 256,
    context: Annotated[int, typer.Option(help="Short-term context.")] = 50,
    features: Annotated[
        str, typer.Option(help="Score precisions, comma list: fp32 (exact), bf16-scores.")
    ] = "fp32,bf16-scores",
    threads: Annotated[int, typer.Option(help="CPU threads.")] = 2,
    runs: Annotated[int, typer.Option(help="Timed runs per figure (after a warm-up).")] = 3,
    out: Annotated[Path | None, typer.Option(help="Folder for floor.json and floor.md.")] = None,
) -> None:
    names = [name.strip() for name in features.split(",") if name.strip()]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows = [floor_row(size, dim, context, name, threads, runs) for name in names]
        env = describe(_CPU)
    finally:
        torch.set_num_threads(previous)
    text = markdown(rows, env)
    typer.echo(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "floor.json") as tmp:
            tmp.write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
        with atomic_path(out / "floor.md") as tmp:
            tmp.write_text(text)
        typer.echo(f"wrote {out / 'floor.json'} and {out / 'floor.md'}")


if __name__ == "__main__":
    app()
