"""The job queue and its executor seam: `from modules.jobs import JobQueue, Job, ...` for everything public.

`queue` orders jobs and owns their state, `job` is the record callers read, `subscription` delivers events,
`executor` defines what crosses to the place a job runs, and `local` is today's executor (worker threads here).
"""

from __future__ import annotations

from modules.jobs.executor import (
    Assignment,
    CallableWork,
    Control,
    Executor,
    GenerationRunner,
    GenerationWork,
    JobContext,
    JobSource,
    Outcome,
    WorkerInfo,
    WorkItem,
)
from modules.jobs.job import (
    EventKind,
    Job,
    JobCancelled,
    JobEvent,
    JobProgress,
    JobState,
    QueueStopped,
    UnknownJob,
    fair_group,
    progress_fraction,
)
from modules.jobs.local import LocalThreadExecutor, NoGenerationRunner
from modules.jobs.queue import JobFunction, JobQueue
from modules.jobs.subscription import Subscription

_fraction = progress_fraction  # the name the queue's tests know

__all__ = [
    "Assignment", "CallableWork", "Control", "EventKind", "Executor", "GenerationRunner", "GenerationWork", "Job",
    "JobCancelled", "JobContext", "JobEvent", "JobFunction", "JobProgress", "JobQueue", "JobSource", "JobState",
    "LocalThreadExecutor", "NoGenerationRunner", "Outcome", "QueueStopped", "Subscription", "UnknownJob",
    "WorkItem", "WorkerInfo", "fair_group", "progress_fraction",
]
