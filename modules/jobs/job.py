"""A job as the queue records it: its state, progress, preview, result or error, and the events it produces.

States: queued -> running -> done | failed | interrupted; a queued job can also become cancelled. An interrupted
job keeps its result (the images finished before the interrupt). `Job` is read-only for callers: only the queue
changes it, under its lock.
"""

from __future__ import annotations

import asyncio
import enum
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from PIL import Image

from modules.cancel import CancelToken
from modules.errors import UserError
from modules.jobs.executor import WorkItem
from modules.types import ProgressEvent

if TYPE_CHECKING:
    from modules.jobs.queue import JobQueue


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


class UnknownJob(UserError):
    """No job with that id is known to this queue (or it belongs to another user)."""

    http_status = 404


class JobCancelled(UserError):
    """The job was cancelled before it started."""

    http_status = 409


class QueueStopped(UserError):
    """The server is shutting down and accepts no new jobs."""

    http_status = 503


@dataclass(frozen=True)
class JobProgress:
    """Progress of a job: image batch `job_no` (0-based) of `job_count`, denoising `step` of `total_steps`.

    `fraction` is A1111's formula, (job_no + step / total_steps) / job_count. `eta` is in seconds, None until the
    rate is known; it is measured from the job's own progress reports, so model loading before the first step
    does not distort it.
    """

    step: int = 0
    total_steps: int = 0
    job_no: int = 0
    job_count: int = 1
    fraction: float = 0.0
    eta: float | None = None
    textinfo: str = ""


EventKind = Literal["queued", "started", "progress", "finished"]


@dataclass(frozen=True)
class JobEvent:
    """One change of one job, as delivered to subscribers. `preview` is set on progress events that bring a new
    preview image; `message` holds the error message of a failed job."""

    job_id: str
    kind: EventKind
    state: JobState
    progress: JobProgress
    preview: Image.Image | None = None
    preview_id: int = 0
    message: str = ""


class Job:
    """One submitted unit of work. Read-only for callers; the queue updates it under its lock.

    `cancel_token` records the interrupt/skip requested for the job (`JobQueue.cancel` / `skip` send them on to
    the executor); `work` is dropped once the job has finished."""

    def __init__(self, work: WorkItem, job_id: str, owner: str | None, description: str,
                 queue: "JobQueue", *, group: str = "") -> None:
        self.id = job_id
        self.owner = owner
        self.group = group
        """Who the job counts for in the queue's round-robin (see `modules.jobs.queue`)."""
        self.description = description
        self.cancel_token = CancelToken()
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.error_message: str | None = None
        self.preview: Image.Image | None = None
        self.preview_id = 0
        self.work: WorkItem | None = work
        self.worker: str | None = None
        """The name of the executor's worker running the job (None: not running, or the local thread)."""
        self.notes: tuple[str, ...] = ()
        """Notes from the queue (a lost worker); added to a generation result's comments."""
        self.requeues = 0
        self._queue = queue
        self._state = JobState.QUEUED
        self._progress = JobProgress()
        self._rate_origin: tuple[float, float] | None = None
        self._eta_at: tuple[float, float] | None = None  # (clock time of the estimate, eta then)
        self._done = threading.Event()
        self._arrival = 0  # the queue's submission counter, set by the queue

    @property
    def state(self) -> JobState:
        return self._state

    @property
    def position(self) -> int | None:
        """1-based place among the queued jobs in the queue's fair order (1 = runs next), None when not queued."""
        return self._queue._position(self)

    @property
    def progress(self) -> JobProgress:
        """Latest progress with the ETA counted down to now."""
        progress, eta_at = self._progress, self._eta_at
        if eta_at is None or self._state is not JobState.RUNNING:
            return progress
        clock_then, eta_then = eta_at
        return replace(progress, eta=max(0.0, eta_then - (self._queue.clock() - clock_then)))

    @property
    def textinfo(self) -> str:
        return self._progress.textinfo

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (any final state); returns False on timeout."""
        return self._done.wait(timeout)

    async def wait_async(self, timeout: float | None = None) -> bool:
        """`wait()` for asyncio code (runs the blocking wait in a worker thread)."""
        return await asyncio.to_thread(self._done.wait, timeout)

    def outcome(self, timeout: float | None = None) -> Any:
        """The work's return value once finished (also for an interrupted job). Re-raises the work's
        exception for a failed job; JobCancelled for a cancelled one; TimeoutError if not finished in time."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"job {self.id} has not finished")
        if self._state is JobState.CANCELLED:
            raise JobCancelled(f"The job {self.description or self.id} was cancelled before it started.")
        if self.error is not None:
            raise self.error
        return self.result

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, state={self._state.value}, owner={self.owner!r}, {self.description!r})"


def fair_group(user: str | None, address: str | None = None) -> str | None:
    """The queue's round-robin group of a client: its login (`user:<name>`, the same for the UI's login and the
    API's --api-auth user), else its network address (`addr:<host>`), else None (the owner decides)."""
    if user:
        return f"user:{user}"
    if address:
        return f"addr:{address}"
    return None


def progress_fraction(event: ProgressEvent) -> float:
    """A1111's progress formula: finished batches plus the current batch's step fraction, capped at 1."""
    if event.job_count <= 0:
        return 0.0
    progress = event.job_no / event.job_count
    if event.total_steps > 0:
        progress += event.step / event.total_steps / event.job_count
    return min(progress, 1.0)
