"""`hvc-run --jobs jobs.csv --out R`: a job list, by one process or shared out across
`torchrun` processes (thin over `hvc_runtime.runs`).

Only rank 0 shows progress and the final table; every process says which of its jobs failed.
"""

from __future__ import annotations

import functools
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hvc_runtime.cli.options import FLAGS, build_segmenter, local_weights
from hvc_runtime.cli.terminal import console, describe, job_progress, print_error
from hvc_runtime.propagation import PropagationConfig
from hvc_runtime.runs import Job, JobOptions, JobPlan, JobReport, plan_jobs, read_job_list, run_jobs
from hvc_runtime.runs.batch import JOBS_TIMEOUT, claim_output
from hvc_runtime.utils.devices import resolve_device
from hvc_runtime.utils.distributed import init_from_env, rank_device, run_on_main, shutdown
from hvc_runtime.utils.errors import HvcError

STYLES = {"done": "green", "skipped": "cyan", "failed": "red", "interrupted": "yellow"}


def run_job_list(
    jobs_file: Path,
    out: Path,
    segmenter: dict,
    propagation: PropagationConfig,
    *,
    overlay: bool,
    overwrite: bool,
    resize_mask: bool,
    allow_partial: bool,
) -> None:
    """Plan, load the model once, run this process's share; exit 1 if any job failed."""
    target = resolve_device(segmenter["device"])
    group = init_from_env(target.type, timeout=JOBS_TIMEOUT)
    console.quiet = not group.is_main  # errors still print on every rank
    run_on_main(group, lambda: read_job_list(jobs_file))  # a bad list: before anything runs
    claim = run_on_main(group, lambda: claim_output(out, overwrite))  # one list at a time in OUT
    try:
        worded = functools.partial(describe, flags=FLAGS)  # errors name this command's flags
        segmenter["device"] = str(rank_device(group, target))
        # the model first: what it makes decides which results are done
        engine = build_segmenter(segmenter, propagation)
        protected = tuple(local_weights(segmenter))
        options = JobOptions(overlay, overwrite, resize_mask, allow_partial, protected)
        plan = plan_jobs(jobs_file, out, engine, group, options=options, describe=worded)
        if group.is_main:
            _print_plan(plan, group.world_size)

        def failed(job: Job, error: HvcError) -> None:
            print_error(f"job {job.name}: {worded(error)}")

        with job_progress(len(plan.frames), plan.total_frames) as update:
            report = run_jobs(
                plan,
                engine,
                group,
                on_progress=update,
                on_failure=failed,
                describe=worded,
            )
        shutdown(group)
        if group.is_main:
            _print_table(report)
        if report.failed:
            raise typer.Exit(1)

    finally:
        if claim is not None:
            claim.release()


def _print_plan(plan: JobPlan, processes: int) -> None:
    """What runs, what does not and why: an earlier result made again, a job refused."""
    settled = [o.status for o in plan.settled.values()]
    unknown = sum(n is None for n in plan.frames.values())
    frames = f"{sum(n for n in plan.frames.values() if n is not None)} frames" + (
        f" and {unknown} video(s) whose container does not state a length" if unknown else ""
    )
    console.print(
        f"{len(plan.jobs)} jobs in {plan.jobs_file}: {len(plan.frames)} to run ({frames}) on "
        f"{processes} process(es), {settled.count('skipped')} complete from an earlier run, "
        f"{settled.count('failed')} refused",
        highlight=False,
        markup=False,
    )
    for name, why in plan.redone.items():
        console.print(f"job {name}: made again: {why}", highlight=False, markup=False)
    for outcome in plan.settled.values():
        if outcome.status == "failed":
            print_error(f"job {outcome.name}: {outcome.error}")


def _print_table(report: JobReport) -> None:
    table = Table("job", "status", "frames", "s", "detail")
    for o in report.outcomes:
        style = STYLES.get(o.status, "")
        table.add_row(
            escape(o.name),
            f"[{style}]{o.status}[/]" if style else o.status,
            str(o.frames) if o.frames else "",
            f"{o.seconds:.1f}" if o.seconds else "",
            escape(o.error or ("complete from an earlier run" if o.status == "skipped" else "")),
        )
    Console().print(table)
    counts = ", ".join(
        f"{report.count(s)} {s}" for s in ("done", "skipped", "failed") if report.count(s)
    )
    console.print(
        f"{counts}; {report.jobs_per_hour:.0f} jobs/hour, {report.frames_per_second:.1f} "
        f"frames/s\ntable: {Path(report.out) / 'jobs.json'}",
        highlight=False,
        markup=False,
    )
