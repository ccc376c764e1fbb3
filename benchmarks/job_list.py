"""Job-list throughput: `python -m benchmarks.job_list --help`.

Runs one job list (generated mp4 videos, or the DAVIS-2016 val sequences with `--davis`)
through `hvc_runtime.runs.run_jobs` in one process, with and without decoding the next video
while the current one is segmented, and writes `job_list.json`: jobs per hour and frames per
second. The model loads once, before the clock starts, as in `hvc-run --jobs`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer
from rich.console import Console

from benchmarks.cases import frame_size
from benchmarks.environment import describe
from benchmarks.report import write_json
from hvc_export.parity import natural_texture
from hvc_runtime.cli.terminal import user_errors
from hvc_runtime.io.masks import write_palette_png
from hvc_runtime.runs import JobOptions, plan_jobs, run_jobs
from hvc_runtime.segmenter import Segmenter
from hvc_runtime.utils.devices import resolve_device
from hvc_runtime.utils.errors import HvcError

console = Console(stderr=True)
app = typer.Typer(add_completion=False, help=__doc__)
DAVIS = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis2016"


def generated_list(folder: Path, jobs: int, frames: int, height: int, width: int) -> Path:
    """`jobs` panning mp4 videos (lengths `frames` down to half of it, so the list has long and
    short jobs) with first-frame masks, and their CSV. Sizes are rounded down to even numbers,
    as the mp4 encoder does."""
    height, width = height - height % 2, width - width % 2
    rows = ["video,mask,name"]
    for k in range(jobs):
        length = frames - (frames // 2) * k // max(jobs - 1, 1)
        texture = natural_texture(height, width + 2 * length, seed=k)
        writer = cv2.VideoWriter(
            str(folder / f"v{k}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 24.0, (width, height)
        )
        for t in range(length):
            writer.write(cv2.cvtColor(texture[:, 2 * t : 2 * t + width], cv2.COLOR_RGB2BGR))
        writer.release()
        mask = np.zeros((height, width), np.uint8)
        mask[height // 4 : 3 * height // 4, width // 4 : width // 2] = 1
        write_palette_png(folder / f"m{k}.png", mask)
        rows.append(f"v{k}.mp4,m{k}.png,job{k}")
    (folder / "jobs.csv").write_text("\n".join(rows) + "\n")
    return folder / "jobs.csv"


def davis_list(folder: Path, root: Path) -> Path:
    """The DAVIS-2016 val sequences from their first annotations."""
    names = (root / "ImageSets" / "480p" / "val.txt").read_text().split()
    rows = ["video,mask,name"] + [
        f"{root}/JPEGImages/480p/{n},{root}/Annotations/480p/{n}/00000.png,{n}" for n in names
    ]
    (folder / "jobs.csv").write_text("\n".join(rows) + "\n")
    return folder / "jobs.csv"


@app.command()
def main(
    jobs: Annotated[int, typer.Option(help="Generated videos in the list.")] = 8,
    frames: Annotated[int, typer.Option(help="Frames of the longest generated video.")] = 48,
    size: Annotated[str, typer.Option(help="Generated video size, HEIGHTxWIDTH.")] = "240x426",
    davis: Annotated[
        bool, typer.Option("--davis", help="The DAVIS-2016 val sequences instead.")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("benchmarks/results"),
) -> None:
    """Time the list with and without read-ahead of the next video; write job_list.json."""
    with user_errors():
        target = resolve_device(device)
        out.mkdir(parents=True, exist_ok=True)
        segmenter = Segmenter.from_checkpoint(device=str(target))
        rows = []
        with tempfile.TemporaryDirectory(prefix="hvc-bench-jobs-") as scratch:
            inputs = Path(scratch) / "inputs"
            inputs.mkdir()
            if davis and not DAVIS.is_dir():
                raise HvcError(f"{DAVIS}: no DAVIS-2016 data for --davis")
            listed = (
                davis_list(inputs, DAVIS)
                if davis
                else generated_list(inputs, jobs, frames, *frame_size(size))
            )
            lines = listed.read_text().splitlines()
            warmup = listed.with_name("warmup.csv")  # one short job: first-call costs
            warmup.write_text(f"{lines[0]}\n{lines[-1]}\n")
            options = JobOptions(overlay=False)
            run_jobs(
                plan_jobs(warmup, Path(scratch) / "warmup", segmenter, options=options), segmenter
            )
            for read_ahead in (False, True):
                scratch_out = Path(scratch) / f"read-ahead-{read_ahead}"
                plan = plan_jobs(listed, scratch_out, segmenter, options=options)
                began = time.perf_counter()
                report = run_jobs(plan, segmenter, read_ahead=read_ahead)
                seconds = time.perf_counter() - began
                failed = [o for o in report.outcomes if o.status != "done"]
                if failed:  # a throughput of failing jobs would mean nothing
                    raise HvcError(f"job {failed[0].name} {failed[0].status}: {failed[0].error}")
                rows.append(
                    {
                        "read_ahead": read_ahead,
                        "jobs": report.count("done"),
                        "frames": sum(plan.frames.values()),
                        "seconds": round(seconds, 3),
                        "jobs_per_hour": round(report.jobs_per_hour, 1),
                        "frames_per_second": round(report.frames_per_second, 2),
                    }
                )
                console.print(
                    f"read-ahead {'on' if read_ahead else 'off'}: {rows[-1]['jobs']} jobs, "
                    f"{rows[-1]['frames']} frames in {seconds:.1f} s: "
                    f"{rows[-1]['jobs_per_hour']:.0f} jobs/hour, "
                    f"{rows[-1]['frames_per_second']:.2f} frames/s",
                    highlight=False,
                )
        results = {
            "environment": describe(target),
            "settings": {
                "source": "davis2016 val" if davis else "generated mp4",
                "jobs": jobs,
                "frames": frames,
                "size": size,
                "overlay": False,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
            "job_list": rows,
            "read_ahead_speedup": round(rows[0]["seconds"] / rows[1]["seconds"], 3),
        }
        write_json(results, out / "job_list.json")
        console.print(f"written: {out / 'job_list.json'}", highlight=False)


if __name__ == "__main__":
    app()
