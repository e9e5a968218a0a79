"""The job queue: one worker thread per device runs jobs one at a time, in submission order.

HTTP handlers and Gradio callbacks only `submit()` and then wait or poll; the worker calls the job function with a
`JobContext` that carries the job's own `CancelToken` (interrupt / skip, A1111 semantics) and a `report()` method
for progress. There is no global state object: progress, the latest preview and the ETA live on each `Job`, and
subscribers receive `JobEvent`s (design §7.8; Comfy's `prompt_worker`, A1111's `queue_lock` + progress API).

States: queued -> running -> done | failed | interrupted; a queued job can also become cancelled. An interrupted
job keeps what its function returned (A1111 returns the images finished before the interrupt). A function that
raises leaves the job failed and the worker carries on with the next job: a `UserError` message is shown as is,
anything else is logged with its traceback and reported as "internal error: ...".

Finished jobs stay visible for a bounded history (default 100) so that clients can poll after completion.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Callable, Iterator, Literal

from PIL import Image

from modules.cancel import CancelToken
from modules.errors import InvalidRequest, UserError
from modules.types import ProgressEvent

log = logging.getLogger(__name__)


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


JobFunction = Callable[["JobContext"], Any]


class JobContext:
    """What a running job function receives: its cancel token and a way to report progress."""

    def __init__(self, job: "Job", queue: "JobQueue") -> None:
        self._job = job
        self._queue = queue

    @property
    def job_id(self) -> str:
        return self._job.id

    @property
    def cancel(self) -> CancelToken:
        return self._job.cancel_token

    def report(self, event: ProgressEvent) -> None:
        """Record progress (and a preview image if the event has one) and notify subscribers."""
        self._queue._on_progress(self._job, event)


class Job:
    """One submitted unit of work. Read-only for callers; the queue updates it under its lock."""

    def __init__(self, fn: JobFunction, job_id: str, owner: str | None, description: str,
                 queue: "JobQueue") -> None:
        self.id = job_id
        self.owner = owner
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
        self._fn: JobFunction | None = fn
        self._queue = queue
        self._state = JobState.QUEUED
        self._progress = JobProgress()
        self._rate_origin: tuple[float, float] | None = None
        self._eta_at: tuple[float, float] | None = None  # (clock time of the estimate, eta then)
        self._done = threading.Event()

    @property
    def state(self) -> JobState:
        return self._state

    @property
    def position(self) -> int | None:
        """1-based place among the queued jobs (1 = runs next), None when not queued."""
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
        """The function's return value once finished (also for an interrupted job). Re-raises the function's
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


class Subscription:
    """A subscriber's private event buffer, filled by the queue, read with `get()`, iteration or `async for`.

    Holds at most `maxlen` events; when a slow reader falls behind the oldest are dropped (the final event of a
    job is the newest, so it is never the one lost). Iteration ends when a single-job subscription sees that job
    finish, or when the subscription is closed (also by `JobQueue.stop()`).
    """

    def __init__(self, queue: "JobQueue", job_id: str | None, maxlen: int = 256) -> None:
        self.job_id = job_id
        self._queue = queue
        self._events: deque[JobEvent] = deque(maxlen=maxlen)
        self._cond = threading.Condition()
        self._closed = False
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    @property
    def closed(self) -> bool:
        return self._closed

    def _deliver(self, event: JobEvent) -> None:
        with self._cond:
            if self._closed:
                return
            self._events.append(event)
            self._wake_locked()

    def _wake_locked(self) -> None:
        self._cond.notify_all()
        waiters, self._async_waiters = self._async_waiters, []
        for loop, flag in waiters:
            try:
                loop.call_soon_threadsafe(flag.set)
            except RuntimeError:
                pass  # that event loop is closed; nobody is waiting any more

    def get(self, timeout: float | None = None) -> JobEvent | None:
        """Next event; None when closed and drained, or after `timeout` seconds without one."""
        with self._cond:
            self._cond.wait_for(lambda: self._events or self._closed, timeout)
            return self._events.popleft() if self._events else None

    async def aget(self, timeout: float | None = None) -> JobEvent | None:
        """`get()` for asyncio code, without tying up a thread while waiting."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self._cond:
                if self._events:
                    return self._events.popleft()
                if self._closed:
                    return None
                flag = asyncio.Event()
                self._async_waiters.append((loop, flag))
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            try:
                await asyncio.wait_for(flag.wait(), remaining)
            except asyncio.TimeoutError:
                return None

    def _ends_stream(self, event: JobEvent) -> bool:
        return self.job_id is not None and event.kind == "finished"

    def __iter__(self) -> Iterator[JobEvent]:
        while (event := self.get()) is not None:
            yield event
            if self._ends_stream(event):
                self.close()
                return

    async def __aiter__(self) -> AsyncIterator[JobEvent]:
        while (event := await self.aget()) is not None:
            yield event
            if self._ends_stream(event):
                self.close()
                return

    def close(self) -> None:
        """Stop receiving events; readers waiting in get()/aget() return None once the buffer is drained."""
        self._queue._unsubscribe(self)
        with self._cond:
            self._closed = True
            self._wake_locked()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JobQueue:
    """FIFO queue with one worker thread. `clock` (monotonic seconds) is injectable for ETA tests."""

    def __init__(self, name: str = "default", *, history: int = 100,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.clock = clock
        self._cond = threading.Condition()
        self._pending: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._history: deque[str] = deque()
        self._history_limit = history
        self._current: Job | None = None
        self._subscriptions: list[Subscription] = []
        self._stopping = False
        self._worker = threading.Thread(target=self._worker_loop, name=f"job-worker-{name}", daemon=True)
        self._worker.start()

    # -- submitting and inspecting -------------------------------------------------------------------------

    def submit(self, fn: JobFunction, *, owner: str | None = None, task_id: str | None = None,
               description: str = "") -> Job:
        """Queue `fn(ctx)`; `task_id` is A1111's force_task_id (the id a client chose to poll progress with)."""
        with self._cond:
            if self._stopping:
                raise QueueStopped("The server is shutting down and does not accept new jobs.")
            if task_id is not None and task_id in self._jobs:
                raise InvalidRequest(f"The task id {task_id!r} is already in use.")
            job = Job(fn, task_id or uuid.uuid4().hex, owner, description, self)
            self._jobs[job.id] = job
            self._pending.append(job)
            self._publish_locked(job, "queued")
            self._cond.notify_all()
        return job

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job with that id; with `owner` given, only that owner's jobs are visible (else UnknownJob)."""
        with self._cond:
            job = self._jobs.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            raise UnknownJob(f"No job with id {job_id!r}.")
        return job

    def list(self, owner: str | None = None) -> list[Job]:
        """Queued, running and recently finished jobs in submission order, optionally one owner's only."""
        with self._cond:
            jobs = list(self._jobs.values())
        return [job for job in jobs if owner is None or job.owner == owner]

    def current(self) -> Job | None:
        """The running job, if any."""
        return self._current

    def pending_count(self) -> int:
        with self._cond:
            return len(self._pending)

    def _position(self, job: Job) -> int | None:
        with self._cond:
            if job.state is not JobState.QUEUED:
                return None
            for index, queued in enumerate(self._pending):
                if queued is job:
                    return index + 1
        return None

    # -- cancelling ------------------------------------------------------------------------------------------

    def cancel(self, job_id: str, owner: str | None = None) -> bool:
        """Remove a queued job (-> cancelled) or interrupt a running one. False if it had already finished."""
        job = self.get(job_id, owner)
        with self._cond:
            if job.state is JobState.QUEUED:
                self._pending.remove(job)
                self._finish_locked(job, JobState.CANCELLED)
                return True
            if job.state is JobState.RUNNING:
                job.cancel_token.interrupt()
                return True
        return False

    def interrupt_current(self, owner: str | None = None) -> bool:
        """A1111 "Interrupt": stop the running job now (its finished images are kept)."""
        job = self._current
        if job is None or (owner is not None and job.owner != owner):
            return False
        job.cancel_token.interrupt()
        return True

    def skip_current(self, owner: str | None = None) -> bool:
        """A1111 "Skip": abandon the running job's current batch and go on with the next one."""
        job = self._current
        if job is None or (owner is not None and job.owner != owner):
            return False
        job.cancel_token.skip()
        return True

    # -- events ----------------------------------------------------------------------------------------------

    def subscribe(self, job_id: str | None = None, *, owner: str | None = None, maxlen: int = 256) -> Subscription:
        """Events of one job (ends when it finishes; delivered at once if it already has) or of all jobs.
        With `owner`, a single-job subscription is only allowed for that owner's job (else UnknownJob)."""
        with self._cond:
            job = self.get(job_id, owner) if job_id is not None else None
            subscription = Subscription(self, job_id, maxlen)
            self._subscriptions.append(subscription)
            if job is not None and job.state.finished:
                subscription._deliver(self._event(job, "finished"))
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._cond:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def _event(self, job: Job, kind: EventKind, preview: Image.Image | None = None) -> JobEvent:
        return JobEvent(job.id, kind, job.state, job.progress, preview, job.preview_id, job.error_message or "")

    def _publish_locked(self, job: Job, kind: EventKind, preview: Image.Image | None = None) -> None:
        event = self._event(job, kind, preview)
        for subscription in self._subscriptions:
            if subscription.job_id is None or subscription.job_id == job.id:
                subscription._deliver(event)

    def _on_progress(self, job: Job, event: ProgressEvent) -> None:
        with self._cond:
            fraction = _fraction(event)
            now = self.clock()
            eta = self._estimate_eta_locked(job, fraction, now)
            job._progress = JobProgress(event.step, event.total_steps, event.job_no, event.job_count, fraction,
                                        eta, event.textinfo)
            if event.preview is not None:
                job.preview = event.preview
                job.preview_id += 1
            self._publish_locked(job, "progress", event.preview)

    @staticmethod
    def _estimate_eta_locked(job: Job, fraction: float, now: float) -> float | None:
        if job._rate_origin is None:
            job._rate_origin = (now, fraction)
            return None
        t0, f0 = job._rate_origin
        if fraction <= f0 or now <= t0:
            return job._eta_at[1] if job._eta_at else None
        eta = (1.0 - fraction) * (now - t0) / (fraction - f0)
        job._eta_at = (now, eta)
        return eta

    # -- the worker ------------------------------------------------------------------------------------------

    def _worker_loop(self) -> None:
        while (job := self._take_next()) is not None:
            self._run(job)

    def _take_next(self) -> Job | None:
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self._stopping)
            if self._stopping:
                return None
            job = self._pending.popleft()
            job._state = JobState.RUNNING
            job.started = time.time()
            self._current = job
            self._publish_locked(job, "started")
            return job

    def _run(self, job: Job) -> None:
        context = JobContext(job, self)
        assert job._fn is not None, "a job runs once"
        try:
            result = job._fn(context)
        except BaseException as exc:  # noqa: BLE001 - the worker must survive any job, even one calling sys.exit
            self._fail(job, exc)
            return
        with self._cond:
            job.result = result
            state = JobState.INTERRUPTED if job.cancel_token.interrupted else JobState.DONE
            self._finish_locked(job, state)

    def _fail(self, job: Job, exc: BaseException) -> None:
        if isinstance(exc, UserError):
            message = str(exc)
        elif job.cancel_token.interrupted:
            message = "interrupted"
        else:
            log.error("job %s (%s) failed", job.id, job.description, exc_info=exc)
            message = f"internal error: {type(exc).__name__}: {exc}"
        with self._cond:
            job.error, job.error_message = exc, message
            state = JobState.INTERRUPTED if job.cancel_token.interrupted else JobState.FAILED
            self._finish_locked(job, state)

    def _finish_locked(self, job: Job, state: JobState) -> None:
        job._state = state
        complete = state is JobState.DONE
        job._progress = replace(job._progress, fraction=1.0 if complete else job._progress.fraction,
                                eta=0.0 if complete else None)
        job.finished = time.time()
        job._fn = None  # drop the closure (and the request/images it captured) right away
        if self._current is job:
            self._current = None
        self._history.append(job.id)
        while len(self._history) > self._history_limit:
            self._jobs.pop(self._history.popleft(), None)
        self._publish_locked(job, "finished")
        job._done.set()

    # -- shutdown --------------------------------------------------------------------------------------------

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Cancel queued jobs, interrupt the running one, end the worker and all subscriptions.
        Returns False if the worker did not end within `timeout` seconds (a job ignoring its cancel token)."""
        with self._cond:
            self._stopping = True
            while self._pending:
                self._finish_locked(self._pending.popleft(), JobState.CANCELLED)
            if self._current is not None:
                self._current.cancel_token.interrupt()
            self._cond.notify_all()
        if self._worker is not threading.current_thread():
            self._worker.join(timeout)
        for subscription in list(self._subscriptions):
            subscription.close()
        return not self._worker.is_alive()


def _fraction(event: ProgressEvent) -> float:
    """A1111's progress formula: finished batches plus the current batch's step fraction, capped at 1."""
    if event.job_count <= 0:
        return 0.0
    progress = event.job_no / event.job_count
    if event.total_steps > 0:
        progress += event.step / event.total_steps / event.job_count
    return min(progress, 1.0)
