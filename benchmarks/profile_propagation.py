"""Where one frame of propagation spends its time, by operator (torch.profiler).

    python -m benchmarks.profile_propagation --size 480p --dim 256 --context 50 \\
        --out benchmarks/runs/cpu-480p/profile.md

A propagator with a full context of distinct frames (as the latency benchmark's propagation rows)
steps one warm-up frame, then one profiled frame. Writes the operator table, slowest first, with
the machine and the commit. It runs on one CPU thread by default: with more, the fast mode scores
its tiles in worker threads, which the profiler does not see.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import torch
import typer
from torch.profiler import ProfilerActivity, profile

from benchmarks.cases import feature_setting, frame_size, steady_state_propagator
from benchmarks.environment import describe
from hvc_runtime.encoder.network import feature_size
from hvc_runtime.encoder.precision import DTYPES
from hvc_runtime.propagation import PropagationConfig
from hvc_runtime.utils.atomic import atomic_path
from hvc_runtime.utils.devices import resolve_device

app = typer.Typer(add_completion=False)


@app.command()
def main(
    size: Annotated[str, typer.Option(help="480p, 720p, 1080p or HEIGHTxWIDTH.")] = "480p",
    dim: Annotated[int, typer.Option(help="Feature dim.")] = 256,
    context: Annotated[int, typer.Option(help="Short-term context.")] = 50,
    features: Annotated[str, typer.Option(help="fp32, bf16, bf16-scores, ...")] = "fp32",
    implementation: Annotated[str, typer.Option(help="fast or reference.")] = "fast",
    rows: Annotated[int, typer.Option(help="Operators listed.")] = 15,
    threads: Annotated[int, typer.Option(help="CPU threads (see above).")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "cpu",
    out: Annotated[Path | None, typer.Option(help="Markdown file to write.")] = None,
) -> None:
    target = resolve_device(device)
    torch.set_num_threads(threads)
    precision, fp32_scores = feature_setting(features)
    config = PropagationConfig(context_size=context, fp32_scores=fp32_scores)
    grid = feature_size(*frame_size(size))
    propagator, query = steady_state_propagator(
        config, dim, grid, target, implementation, DTYPES[precision]
    )
    propagator.step(query)  # warm-up: window tables, first-use checks
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if target.type == "cuda" else [])
    began = time.perf_counter()
    with profile(activities=activities) as profiled:
        propagator.step(query)
    seconds = time.perf_counter() - began
    table = profiled.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    env = describe(target)
    text = (
        f"# One frame of {implementation} propagation: {size} ({grid[0]}×{grid[1]} cells), "
        f"{dim}-d, context 1+{context}, {features}\n\n"
        f"{env['device_name']} ({env['device']}, {env['cpu_threads']} threads), torch "
        f"{env['versions']['torch']}, git {env['git_revision']}. The frame took {seconds:.2f} s "
        "under the profiler. Self CPU time per operator:\n\n```\n" + table + "\n```\n"
    )
    typer.echo(text)
    if out is not None:
        with atomic_path(out) as tmp:
            tmp.write_text(text)
        typer.echo(f"wrote {out}")


if __name__ == "__main__":
    app()
