"""A job list run into `<out>/<name>/` result folders, by one process or shared out across
torchrun's processes (one GPU each, several machines through its rendezvous).

Rank 0 plans (checks the list, skips complete results, counts frames) and every process takes
its share, longest videos first; the model loads once per process. A bad job fails alone, an
interruption stops cleanly with finished jobs kept, and a rerun resumes. While one video is
segmented the next one's frames are already being decoded. Rank 0 writes the table of every
job, `<out>/jobs.json`.
"""

from __future__ import annotations

import json
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

from hvc_runtime.io.frames import open_frames
from hvc_runtime.io.prefetch import ReadAhead, preload
from hvc_runtime.runs.job_list import REPORT, Job, read_job_list, share_out
from hvc_runtime.runs.single import VideoRun, is_complete
from hvc_runtime.segmenter import Segmenter
from hvc_runtime.utils.atomic import atomic_path
from hvc_runtime.utils.distributed import (
    DistContext,
    SharedCounter,
    broadcast_from_main,
    gather_objects,
    run_on_main,
)
from hvc_runtime.utils.errors import HvcError, HvcWarning
from hvc_runtime.utils.interrupts import Interrupted
from hvc_runtime.utils.locks import FolderLock

JOBS_TIMEOUT = timedelta(hours=24)  # ranks wait for the slowest share before the table
JOBS_LOCK = ".hvc-jobs.lock"  # in OUT, held by the job list writing into it
READ_AHEAD_FRAMES = 8  # frames of the next video decoded while this one is segmented
PROGRESS_SECONDS = 0.5  # how often the shared progress counts are exchanged
ONE_PROCESS = DistContext()  # without torchrun

ProgressReport = Callable[[int, int], None]  # (jobs finished, frames segmented), all processes


@dataclass
class JobOutcome:
    """What became of one job: done, skipped (complete from an earlier run), failed (and why),
    interrupted, or not run (an interruption came first)."""

    name: str
    video: str
    mask: str
    status: str
    frames: int = 0
    seconds: float = 0.0
    error: str | None = None
    rank: int | None = None


@dataclass
class JobPlan:
    """The checked job list and its split: `frames` of each job to run, `settled` the jobs
    that need no run (skipped, or failed before one: the video does not open), `shares` the
    job names of each process, longest first."""

    jobs_file: Path
    out: Path
    jobs: list[Job]
    frames: dict[str, int]
    settled: dict[str, JobOutcome]
    shares: list[list[str]]
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def share(self, rank: int) -> list[Job]:
        by_name = {job.name: job for job in self.jobs}
        return [by_name[name] for name in self.shares[rank]]


@dataclass
class JobReport:
    """Every job's outcome in list order, and the throughput of this run."""

    jobs_file: str
    out: str
    processes: int
    seconds: float
    outcomes: list[JobOutcome]
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def complete(self) -> bool:
        """Every job has its complete result (done now or earlier)."""
        return all(o.status in ("done", "skipped") for o in self.outcomes)

    @property
    def frames_per_second(self) -> float:
        done = sum(o.frames for o in self.outcomes if o.status == "done")
        return done / self.seconds if self.seconds > 0 else 0.0

    @property
    def jobs_per_hour(self) -> float:
        return 3600 * self.count("done") / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        statuses = ("done", "skipped", "failed", "interrupted", "not run")
        return {
            "tool": "hvc-run",
            "jobs_file": self.jobs_file,
            "out": self.out,
            "complete": self.complete,
            "interrupted": self.interrupted,
            "processes": self.processes,
            "seconds": self.seconds,
            "jobs_per_hour": self.jobs_per_hour,
            "frames_per_second": self.frames_per_second,
            "counts": {status: self.count(status) for status in statuses},
            "jobs": [asdict(o) for o in self.outcomes],
        }

    def write(self) -> Path:
        """`<out>/jobs.json`, written atomically."""
        path = Path(self.out) / REPORT
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        return path


def plan_jobs(
    jobs_file: Path,
    out: Path,
    context: DistContext = ONE_PROCESS,
    *,
    allow_partial: bool = False,
    settings: dict | None = None,
    describe: Callable[[HvcError], str] = str,
) -> JobPlan:
    """Check the list and `out` on rank 0 and share the jobs out; every process gets the same
    plan. A bad list stops every process with one error; a video that does not open fails
    its job alone (`describe` words its error). A complete result is skipped, unless it was
    made with other `settings` (`run_settings` of this run's segmenter; None: any)."""
    plan = run_on_main(
        context,
        lambda: _plan(Path(jobs_file), Path(out), context, allow_partial, settings, describe),
    )
    return broadcast_from_main(context, plan)


def _plan(
    jobs_file: Path,
    out: Path,
    context: DistContext,
    allow_partial: bool,
    settings: dict | None,
    describe: Callable[[HvcError], str],
) -> JobPlan:
    jobs = read_job_list(jobs_file)
    _make_output(out)
    frames: dict[str, int] = {}
    settled: dict[str, JobOutcome] = {}
    for job in jobs:
        if is_complete(out / job.name, job.video, job.mask, settings):
            settled[job.name] = _outcome(job, "skipped")
            continue
        try:
            with warnings.catch_warnings():  # said again when the job runs
                warnings.simplefilter("ignore", HvcWarning)
                frames[job.name] = len(open_frames(job.video, allow_partial=allow_partial))
        except HvcError as error:
            settled[job.name] = _outcome(job, "failed", error=describe(error))
    return JobPlan(jobs_file, out, jobs, frames, settled, share_out(frames, context.world_size))


def claim_output(out: Path) -> FolderLock:
    """Hold `out` for one job list (each job's folder is also locked while it runs): two lists
    into one folder would plan the same jobs and write each other's table."""
    _make_output(out)
    return FolderLock(out, JOBS_LOCK, "hvc-run --jobs")


def _make_output(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise HvcError(f"{out}: output path exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HvcError(f"{out}: cannot create the output folder ({exc.strerror})") from exc


def _outcome(job: Job, status: str, **details) -> JobOutcome:
    return JobOutcome(job.name, str(job.video), str(job.mask), status, **details)


class _Tally:
    """Frames and finished jobs of every process, added to the shared counts every
    PROGRESS_SECONDS, and reported (`on_progress`) on rank 0 as often."""

    def __init__(
        self, context: DistContext, token: str, on_progress: ProgressReport | None
    ) -> None:
        self.frames = SharedCounter(context, f"hvc-jobs/{token}/frames")
        self.jobs = SharedCounter(context, f"hvc-jobs/{token}/jobs")
        self.report = on_progress if context.is_main else None
        self.unsent = 0
        self.last = time.monotonic()

    def frame(self) -> None:
        self.unsent += 1
        if time.monotonic() - self.last >= PROGRESS_SECONDS:
            self.send()

    def job(self) -> None:
        self.jobs.add(1)
        self.send()

    def send(self) -> tuple[int, int]:
        frames = self.frames.add(self.unsent)
        jobs = self.jobs.value()
        self.unsent, self.last = 0, time.monotonic()
        if self.report is not None:
            self.report(jobs, frames)
        return jobs, frames

    def wait_for(self, jobs: int) -> None:
        """On rank 0, once its own share is done: keep reporting until every job has finished."""
        if self.report is None:
            return
        deadline = time.monotonic() + JOBS_TIMEOUT.total_seconds()
        while self.send()[0] < jobs:
            if time.monotonic() > deadline:
                raise HvcError(f"the other processes did not finish their jobs in {JOBS_TIMEOUT}")
            time.sleep(PROGRESS_SECONDS)


@dataclass
class _Next:
    """A job ready to run: its checked run and its frames already being decoded, or the error
    that fails it."""

    job: Job
    run: VideoRun | None = None
    frames: ReadAhead | None = None
    error: HvcError | None = None

    def close(self) -> None:
        """Stop its decoding, and release its folder unless the run committed or aborted it."""
        if self.frames is not None:
            self.frames.close()
        if self.run is not None:
            self.run.result.abort()


def run_jobs(
    plan: JobPlan,
    segmenter: Segmenter,
    context: DistContext = ONE_PROCESS,
    *,
    overlay: bool = True,
    overwrite: bool = False,
    resize_mask: bool = False,
    allow_partial: bool = False,
    read_ahead: bool = True,
    protected: Iterable[Path] = (),
    on_progress: ProgressReport | None = None,
    on_failure: Callable[[Job, HvcError], None] | None = None,
    describe: Callable[[HvcError], str] = str,
) -> JobReport:
    """Run this process's share of `plan` with `segmenter`; returns every job's outcome (on
    every process) and writes `<out>/jobs.json` on rank 0.

    A failing job (`HvcError`) is reported to `on_failure` and the next one runs. An
    interruption (SIGINT, SIGTERM) removes the current job's partial result, keeps the
    finished ones, writes the table on rank 0 and raises `Interrupted`. `protected` are
    inputs no result may replace (checkpoints); `describe` words errors for the table."""
    start = time.perf_counter()
    tally = _Tally(context, plan.token, on_progress)
    mine = plan.share(context.rank)
    outcomes: dict[str, JobOutcome] = {}

    def prepare(job: Job) -> _Next:
        try:
            run = VideoRun(
                job.video,
                job.mask,
                plan.out / job.name,
                overlay=overlay,
                overwrite=overwrite,
                resize_mask=resize_mask,
                allow_partial=allow_partial,
                protected=protected,
            )
        except HvcError as error:
            return _Next(job, error=error)
        frames = None
        if read_ahead:
            device, gpu_decode = segmenter.device, segmenter.gpu_decode
            frames = preload(run.source, device, gpu_decode=gpu_decode, depth=READ_AHEAD_FRAMES)
        return _Next(job, run, frames)

    upcoming = prepare(mine[0]) if mine else None
    current: _Next | None = None
    try:
        for k, job in enumerate(mine):
            current = upcoming
            upcoming = prepare(mine[k + 1]) if k + 1 < len(mine) else None
            outcome, error = _work(current, segmenter, context.rank, tally)
            if error is not None:
                outcome.error = describe(error)
                if on_failure is not None:
                    on_failure(job, error)
            outcomes[job.name] = outcome
            tally.job()
        tally.wait_for(len(plan.frames))
    except KeyboardInterrupt as exc:
        stop = exc if isinstance(exc, Interrupted) else Interrupted()
        where = ""
        if current is not None and current.job.name not in outcomes:
            job = current.job
            # a signal held during the commit is raised once the result is in place
            finished = is_complete(plan.out / job.name, job.video, job.mask)
            status = "done" if finished else "interrupted"
            outcomes[job.name] = _outcome(job, status, rank=context.rank)
            if not finished:
                where = f"job {job.name} {stop.detail or 'before its first frame'}; "
        report = _report(plan, context, outcomes, start, interrupted=True)
        complete = report.count("done") + report.count("skipped")
        raise stop.with_detail(
            f"{where}{complete} of {len(plan.jobs)} jobs complete in {plan.out}; "
            "run again to resume"
        ) from None
    finally:
        for pending in (current, upcoming):  # whatever ended the loop: no thread, no lock left
            if pending is not None:
                pending.close()
    merged = {k: v for share in gather_objects(context, outcomes) for k, v in share.items()}
    return _report(plan, context, merged, start)


def _work(
    job: _Next, segmenter: Segmenter, rank: int, tally: _Tally
) -> tuple[JobOutcome, HvcError | None]:
    """Run one prepared job; an HvcError fails it alone (its result folder left as it was)."""
    try:
        if job.error is not None:
            return _outcome(job.job, "failed", rank=rank), job.error
        summary = job.run.run(segmenter, frames=job.frames, on_frame=lambda _: tally.frame())
    except HvcError as error:
        return _outcome(job.job, "failed", rank=rank), error
    finally:
        job.close()
    return _outcome(
        job.job, "done", frames=summary.frames, seconds=summary.seconds, rank=rank
    ), None


def _report(
    plan: JobPlan,
    context: DistContext,
    outcomes: dict[str, JobOutcome],
    start: float,
    *,
    interrupted: bool = False,
) -> JobReport:
    """Every job's outcome, written by rank 0. After an interruption the other processes'
    outcomes are not exchanged (they may be gone): their jobs count as done where a complete
    result is on disk, else as not run."""
    known = {**plan.settled, **outcomes}
    for job in plan.jobs:
        if job.name not in known:
            done = interrupted and is_complete(plan.out / job.name, job.video, job.mask)
            known[job.name] = _outcome(job, "done" if done else "not run")
    report = JobReport(
        str(plan.jobs_file),
        str(plan.out),
        context.world_size,
        time.perf_counter() - start,
        [known[job.name] for job in plan.jobs],
        interrupted=interrupted,
    )
    if context.is_main:
        report.write()
    return report
