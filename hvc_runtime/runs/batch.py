"""A job list run into `<out>/<name>/` result folders, by one process or shared out across
torchrun's processes (one GPU each, several machines through its rendezvous).

Rank 0 plans (checks the list, skips complete results, checks each job as its run would,
counts frames where the container states them) and every process takes its share, longest
videos first; the model loads once per process. A bad job fails alone, an interruption stops
cleanly with finished jobs kept, and a rerun resumes. While one video is segmented the next
one's frames are already being decoded. Rank 0 writes the table of every job,
`<out>/jobs.json`.
"""

from __future__ import annotations

import json
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

from hvc_runtime.io.prefetch import ReadAhead, preload
from hvc_runtime.runs.job_list import REPORT, Job, read_job_list, share_out
from hvc_runtime.runs.single import NO_RESULT, VideoRun, is_complete, result_problem, run_settings
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

# (jobs finished, frames segmented, frames of all jobs: None while a video of unknown length
# is still to finish), over all processes
ProgressReport = Callable[[int, int, int | None], None]


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


@dataclass(frozen=True)
class JobOptions:
    """How every job of a list is read and written (`VideoRun`'s options): checked for each
    job when the list is planned, applied when it runs."""

    overlay: bool = True
    overwrite: bool = False
    resize_mask: bool = False
    allow_partial: bool = False
    protected: tuple[Path, ...] = ()  # inputs no result may replace (checkpoints)


@dataclass
class JobPlan:
    """The checked job list and its split: `frames` of each job to run (None where only
    decoding the video would tell), `settled` the jobs that need no run (skipped: complete
    from an earlier run; failed: their run was refused when planned), `redone` why each
    earlier result that is made again no longer counts, `shares` the job names of each
    process, longest first. `settings` are what this run's results are made with."""

    jobs_file: Path
    out: Path
    jobs: list[Job]
    settings: dict
    options: JobOptions
    frames: dict[str, int | None]
    settled: dict[str, JobOutcome]
    redone: dict[str, str]
    shares: list[list[str]]
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def share(self, rank: int) -> list[Job]:
        by_name = {job.name: job for job in self.jobs}
        return [by_name[name] for name in self.shares[rank]]

    def video_run(self, job: Job) -> VideoRun:
        """The job's run, checked (video, masks, result folder) and holding its folder."""
        return VideoRun(job.video, job.mask, self.out / job.name, **vars(self.options))

    def is_complete(self, job: Job) -> bool:
        """The one test of a job's completeness: what skips it, and what every report says."""
        return is_complete(self.out / job.name, job.video, job.mask, self.settings)

    @property
    def total_frames(self) -> int | None:
        """Frames of every job to run; None if a video's length is not known before decoding."""
        counts = list(self.frames.values())
        return None if None in counts else sum(counts)


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
        try:
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        except OSError as exc:
            raise HvcError(f"{path}: cannot write the table of jobs ({exc.strerror})") from exc
        return path


def plan_jobs(
    jobs_file: Path,
    out: Path,
    segmenter: Segmenter,
    context: DistContext = ONE_PROCESS,
    *,
    options: JobOptions = JobOptions(),
    describe: Callable[[HvcError], str] = str,
) -> JobPlan:
    """Check the list and `out` on rank 0 and share the jobs out; every process gets the same
    plan. A bad list stops every process with one error; a job whose run is refused (the video
    does not open, a mask does not fit, its folder holds other files) fails alone (`describe`
    words its error). A complete result is skipped unless it was made with other settings
    than `segmenter`'s or from inputs that have changed since."""
    settings = run_settings(segmenter, options.overlay)
    plan = run_on_main(
        context,
        lambda: _plan(Path(jobs_file), Path(out), context, settings, options, describe),
    )
    return broadcast_from_main(context, plan)


def _plan(
    jobs_file: Path,
    out: Path,
    context: DistContext,
    settings: dict,
    options: JobOptions,
    describe: Callable[[HvcError], str],
) -> JobPlan:
    jobs = read_job_list(jobs_file)
    _make_output(out, options.overwrite)
    plan = JobPlan(jobs_file, out, jobs, settings, options, {}, {}, {}, [])
    for job in jobs:
        problem = result_problem(out / job.name, job.video, job.mask, settings)
        if problem is None:
            plan.settled[job.name] = _outcome(job, "skipped")
            continue
        if problem != NO_RESULT:
            plan.redone[job.name] = problem
        try:
            with warnings.catch_warnings():  # said again when the job runs
                warnings.simplefilter("ignore", HvcWarning)
                run = plan.video_run(job)
        except HvcError as error:
            plan.settled[job.name] = _outcome(job, "failed", error=describe(error))
            continue
        run.release()
        plan.frames[job.name] = run.source.length
    plan.shares = share_out(_weights(plan.frames), context.world_size)
    return plan


def _weights(frames: dict[str, int | None]) -> dict[str, int]:
    """What each job weighs when the jobs are shared out: its frames, or for a video whose
    length is not known before decoding, the average of the others (one if none is known)."""
    known = [n for n in frames.values() if n is not None]
    average = round(sum(known) / len(known)) if known else 1
    return {name: average if n is None else n for name, n in frames.items()}


def claim_output(out: Path, overwrite: bool = False) -> FolderLock:
    """Hold `out` for one job list (each job's folder is also locked while it runs): two lists
    into one folder would plan the same jobs and write each other's table."""
    _make_output(out, overwrite)
    return FolderLock(out, JOBS_LOCK, "hvc-run --jobs")


def _make_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise HvcError(f"{out}: output path exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HvcError(f"{out}: cannot create the output folder ({exc.strerror})") from exc
    _check_table_slot(out / REPORT, overwrite)


def _check_table_slot(path: Path, overwrite: bool) -> None:
    """The job list's table replaces an earlier job list's table, nothing else of that name
    unless `overwrite` (and never a folder)."""
    if path.is_dir():
        raise HvcError(f"{path}: is a folder; a job list writes its table there, move it away")
    if not path.exists() or overwrite or _is_job_table(path):
        return
    raise HvcError(
        f"{path}: is not the table of an earlier job list (hvc-run --jobs writes its table there)",
        remedy="overwrite",
    )


def _is_job_table(path: Path) -> bool:
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(table, dict)
        and table.get("tool") == "hvc-run"
        and isinstance(table.get("jobs_file"), str)
        and isinstance(table.get("jobs"), list)
    )


def _outcome(job: Job, status: str, **details) -> JobOutcome:
    return JobOutcome(job.name, str(job.video), str(job.mask), status, **details)


class _Tally:
    """Frames and finished jobs of every process, added to the shared counts every
    PROGRESS_SECONDS, and reported (`on_progress`) on rank 0 as often. The frames total is
    made true as jobs end: a job that fails, stops short or was of unknown length counts
    the frames it had, so that a finished list shows a total it reached."""

    def __init__(self, context: DistContext, plan: JobPlan, on_progress: ProgressReport | None):
        key = f"hvc-jobs/{plan.token}"
        self.frames = SharedCounter(context, f"{key}/frames")
        self.jobs = SharedCounter(context, f"{key}/jobs")
        self.correction = SharedCounter(context, f"{key}/correction")  # frames had − planned
        self.unknown_done = SharedCounter(context, f"{key}/unknown-done")
        self.planned = sum(n for n in plan.frames.values() if n is not None)
        self.unknown = sum(n is None for n in plan.frames.values())
        self.report = on_progress if context.is_main else None
        self.unsent = self.in_job = 0
        self.last = time.monotonic()

    def frame(self) -> None:
        self.unsent += 1
        self.in_job += 1
        if time.monotonic() - self.last >= PROGRESS_SECONDS:
            self.send()

    def job(self, planned: int | None) -> None:
        """A job ended (done or not) after the frames counted since the last one ended."""
        self.correction.add(self.in_job - (planned or 0))
        if planned is None:
            self.unknown_done.add(1)
        self.in_job = 0
        self.jobs.add(1)
        self.send()

    def send(self) -> int:
        frames = self.frames.add(self.unsent)
        jobs = self.jobs.value()
        self.unsent, self.last = 0, time.monotonic()
        if self.report is not None:
            known = self.unknown_done.value() == self.unknown
            self.report(jobs, frames, self.planned + self.correction.value() if known else None)
        return jobs

    def wait_for(self, jobs: int) -> None:
        """On rank 0, once its own share is done: keep reporting until every job has finished."""
        if self.report is None:
            return
        deadline = time.monotonic() + JOBS_TIMEOUT.total_seconds()
        while self.send() < jobs:
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
            self.run.release()


def run_jobs(
    plan: JobPlan,
    segmenter: Segmenter,
    context: DistContext = ONE_PROCESS,
    *,
    read_ahead: bool = True,
    on_progress: ProgressReport | None = None,
    on_failure: Callable[[Job, HvcError], None] | None = None,
    describe: Callable[[HvcError], str] = str,
) -> JobReport:
    """Run this process's share of `plan` with `segmenter` (the one it was planned for);
    returns every job's outcome (on every process) and writes `<out>/jobs.json` on rank 0.

    A failing job (`HvcError`) is reported to `on_failure` and the next one runs. An
    interruption (SIGINT, SIGTERM) removes the current job's partial result, keeps the
    finished ones, writes the table on rank 0 and raises `Interrupted`. `describe` words
    errors for the table."""
    start = time.perf_counter()
    tally = _Tally(context, plan, on_progress)
    mine = plan.share(context.rank)
    outcomes: dict[str, JobOutcome] = {}

    def prepare(job: Job) -> _Next:
        try:
            run = plan.video_run(job)
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
            tally.job(plan.frames[job.name])
        tally.wait_for(len(plan.frames))
    except KeyboardInterrupt as exc:
        stop = exc if isinstance(exc, Interrupted) else Interrupted()
        where = ""
        if current is not None and current.job.name not in outcomes:
            job = current.job
            # a signal held during the commit is raised once the result is in place
            finished = plan.is_complete(job)
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
    outcomes are not exchanged (they may be gone): their jobs count as done where a result
    complete by this run's test (`JobPlan.is_complete`) is on disk, else as not run."""
    known = {**plan.settled, **outcomes}
    for job in plan.jobs:
        if job.name not in known:
            done = interrupted and plan.is_complete(job)
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
