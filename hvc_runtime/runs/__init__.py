"""Runs into result folders: one video (`VideoRun`, what `hvc-run VIDEO MASK` does) and a job
list of many, shared out across torchrun processes (`plan_jobs`, `run_jobs`)."""

from hvc_runtime.runs.batch import (
    JobOptions,
    JobOutcome,
    JobPlan,
    JobReport,
    plan_jobs,
    run_jobs,
)
from hvc_runtime.runs.job_list import Job, read_job_list
from hvc_runtime.runs.single import VideoRun, is_complete, run_settings

__all__ = [
    "Job",
    "JobOptions",
    "JobOutcome",
    "JobPlan",
    "JobReport",
    "VideoRun",
    "is_complete",
    "plan_jobs",
    "read_job_list",
    "run_jobs",
    "run_settings",
]
