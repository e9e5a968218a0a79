"""`JobQueue`: the order jobs run in and their state; an executor (a worker thread here by default) runs them.

HTTP handlers and Gradio callbacks only `submit()` and then wait, poll or subscribe. Jobs run one at a time per
executor worker. Waiting jobs are ordered fairly between users, round-robin: each job has a `group` (the user the
queue is fair between: the UI login, the API user or the client address; by default its owner), jobs of one group
run in submission order, and the next job comes from the group served least recently (a group that has not been
served yet comes first, groups that arrived together in the order of their first jobs). So one user's batch of 100
jobs does not hold everyone else back: user A queues 10 jobs, then user B queues 1, and B's runs second. With one
group (a single user) the order is plain first-come-first-served. Positions follow this order.

A job whose worker was lost mid-job (a Ray worker process killed) may be put back once by the executor
(`requeue`): at the front of its group's jobs, with a note that ends up in its result's comments.

A job whose work raises is failed and the next job runs: a `UserError` message is shown as is, anything else is
logged with its traceback and reported as "internal error: ...".
Finished jobs stay visible for a bounded history (default 100) so that clients can poll after completion.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import replace
from typing import Any, Callable

from PIL import Image

from modules.errors import InvalidRequest, UserError
from modules.jobs.executor import (
    Assignment,
    CallableWork,
    Control,
    Executor,
    JobContext,
    Outcome,
    WorkerInfo,
    WorkItem,
)
from modules.jobs.job import (
    EventKind,
    Job,
    JobEvent,
    JobProgress,
    JobState,
    QueueStopped,
    UnknownJob,
    progress_fraction,
)
from modules.jobs.local import LocalThreadExecutor
from modules.jobs.subscription import Subscription
from modules.types import GenerationResult, ProgressEvent

log = logging.getLogger(__name__)

MAX_REQUEUES = 1
"""How often a job may be put back in the queue after losing its worker (then it fails)."""

JobFunction = Callable[[JobContext], Any]


class JobQueue:
    """Fair (per-group round-robin) queue whose jobs run on `executor` (default: one local worker thread that runs
    only callables); see the module doc for the order.

    `clock` (monotonic seconds) is injectable for ETA tests."""

    def __init__(self, name: str = "default", *, executor: Executor | None = None, history: int = 100,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.clock = clock
        self._cond = threading.Condition()
        self._pending: dict[str, deque[Job]] = {}  # group -> its waiting jobs in submission order
        self._served: dict[str, int] = {}  # group -> the turn it was last served at (see `_order_locked`)
        self._turns = 0
        self._arrivals = 0
        self._order: list[Job] | None = None  # cached run order of the waiting jobs; None: recompute
        self._jobs: dict[str, Job] = {}
        self._running: dict[str, Job] = {}
        self._history: deque[str] = deque()
        self._history_limit = history
        self._subscriptions: list[Subscription] = []
        self._stopping = False
        self._executor: Executor = executor if executor is not None else LocalThreadExecutor(name=name)
        self._executor.start(self)

    # -- submitting and inspecting -------------------------------------------------------------------------

    def submit(self, work: WorkItem | JobFunction, *, owner: str | None = None, task_id: str | None = None,
               description: str = "", group: str | None = None) -> Job:
        """Queue a work item (a plain function of the job context is wrapped as `CallableWork`); `task_id` is
        A1111's force_task_id (the id a client chose to poll progress with). `owner` decides who may see and
        cancel the job; `group` who it counts for in the round-robin (default: the owner; None and "" are one
        shared group)."""
        item = CallableWork(work) if callable(work) else work
        with self._cond:
            if self._stopping:
                raise QueueStopped("The server is shutting down and does not accept new jobs.")
            if task_id is not None and task_id in self._jobs:
                raise InvalidRequest(f"The task id {task_id!r} is already in use.")
            job = Job(item, task_id or uuid.uuid4().hex, owner, description, self,
                      group=group if group is not None else (owner or ""))
            self._arrivals += 1
            job._arrival = self._arrivals
            self._jobs[job.id] = job
            self._pending.setdefault(job.group, deque()).append(job)
            self._order = None
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
        """The running job (the one that started first, if several run), if any."""
        with self._cond:
            return next(iter(self._running.values()), None)

    def workers(self) -> "builtins.list[WorkerInfo]":
        """The executor's named workers (none for the local thread)."""
        return self._executor.workers()

    def pending_count(self) -> int:
        with self._cond:
            return sum(len(jobs) for jobs in self._pending.values())

    def waiting(self, owner: str | None = None) -> "builtins.list[Job]":
        """The queued jobs in the order they will run (optionally one owner's only)."""
        with self._cond:
            order = list(self._order_locked())
        return [job for job in order if owner is None or job.owner == owner]

    def active_count(self, *, exclude_owner: str | None = None) -> int:
        """How many jobs are queued or running, leaving out `exclude_owner`'s (others' jobs, counted not shown)."""
        with self._cond:
            active = [*self._running.values(), *(job for jobs in self._pending.values() for job in jobs)]
        return sum(1 for job in active if exclude_owner is None or job.owner != exclude_owner)

    def _position(self, job: Job) -> int | None:
        with self._cond:
            if job.state is not JobState.QUEUED:
                return None
            order = self._order_locked()
            return order.index(job) + 1 if job in order else None

    def _order_locked(self) -> "builtins.list[Job]":
        """The waiting jobs in run order: round `k` takes the `k`-th waiting job of every group, groups ranked by
        the turn they were last served at (never: first), ties by the arrival of their first waiting job. This is
        exactly the sequence of `take()`s if nothing new arrives: a served group moves behind all the others."""
        if self._order is None:
            groups = sorted(self._pending, key=lambda g: (self._served.get(g, 0), self._pending[g][0]._arrival))
            rounds = max((len(self._pending[g]) for g in groups), default=0)
            self._order = [self._pending[g][k] for k in range(rounds) for g in groups if k < len(self._pending[g])]
        return self._order

    def _remove_pending_locked(self, job: Job) -> None:
        jobs = self._pending[job.group]
        jobs.remove(job)
        if not jobs:
            del self._pending[job.group]
        self._order = None

    # -- cancelling ------------------------------------------------------------------------------------------

    def cancel(self, job_id: str, owner: str | None = None) -> bool:
        """Remove a queued job (-> cancelled) or interrupt a running one. False if it had already finished."""
        job = self.get(job_id, owner)
        with self._cond:
            if job.state is JobState.QUEUED:
                self._remove_pending_locked(job)
                self._finish_locked(job, JobState.CANCELLED)
                return True
            return self._control_locked(job, Control.INTERRUPT)

    def skip(self, job_id: str, owner: str | None = None) -> bool:
        """Skip the current batch of a running job; False for a queued or finished one."""
        job = self.get(job_id, owner)
        with self._cond:
            return self._control_locked(job, Control.SKIP)

    def interrupt_current(self, owner: str | None = None) -> bool:
        """A1111 "Interrupt": stop the running job now (its finished images are kept)."""
        with self._cond:
            job = self.current()
            return job is not None and (owner is None or job.owner == owner) \
                and self._control_locked(job, Control.INTERRUPT)

    def skip_current(self, owner: str | None = None) -> bool:
        """A1111 "Skip": abandon the running job's current batch and go on with the next one."""
        with self._cond:
            job = self.current()
            return job is not None and (owner is None or job.owner == owner) \
                and self._control_locked(job, Control.SKIP)

    def _control_locked(self, job: Job, message: Control) -> bool:
        """Record `message` on the job and send it to the executor; False unless the job is running."""
        if job.state is not JobState.RUNNING:
            return False
        if message is Control.INTERRUPT:
            job.cancel_token.interrupt()
        else:
            job.cancel_token.skip()
        self._executor.control(job.id, message)
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

    # -- the executor's side (JobSource) ---------------------------------------------------------------------

    def take(self) -> Assignment | None:
        """Block until a job is due and mark it running; None once the queue stops. Called by executor workers."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self._stopping)
            if self._stopping:
                return None
            job = self._order_locked()[0]
            self._remove_pending_locked(job)
            self._turns += 1
            self._served[job.group] = self._turns
            job._state = JobState.RUNNING
            job.started = time.time()
            self._running[job.id] = job
            self._publish_locked(job, "started")
            assert job.work is not None, "a job runs once"
            return Assignment(job.id, job.work)

    def placed(self, job_id: str, worker: str) -> None:
        """Record the worker that runs the job (shown by the job API, /sdapi/v1/progress and the Queue panel)."""
        with self._cond:
            job = self._running.get(job_id)
            if job is not None:
                job.worker = worker

    def requeue(self, job_id: str, note: str) -> bool:
        """Put a running job back at the front of its group's jobs (its worker was lost), with `note` for its
        result's comments; False when it may not go back (already re-queued `MAX_REQUEUES` times, interrupted, or
        not running), and the executor then finishes it."""
        with self._cond:
            job = self._running.get(job_id)
            if job is None or job.requeues >= MAX_REQUEUES or job.cancel_token.interrupted or self._stopping:
                return False
            del self._running[job_id]
            job.requeues += 1
            job.notes = (*job.notes, note)
            job.worker = None
            job.started = None
            job._state = JobState.QUEUED
            job._progress = JobProgress()
            job._rate_origin = job._eta_at = None
            job.preview = None
            job.cancel_token.clear_skip()
            self._pending.setdefault(job.group, deque()).appendleft(job)
            self._order = None
            self._publish_locked(job, "queued")
            self._cond.notify_all()
            return True

    def progress(self, job_id: str, event: ProgressEvent) -> None:
        """Record a running job's progress (and preview image) and notify subscribers."""
        with self._cond:
            job = self._running.get(job_id)
            if job is None:
                return
            fraction = progress_fraction(event)
            eta = self._estimate_eta_locked(job, fraction, self.clock())
            job._progress = JobProgress(event.step, event.total_steps, event.job_no, event.job_count, fraction,
                                        eta, event.textinfo)
            if event.preview is not None:
                job.preview = event.preview
                job.preview_id += 1
            self._publish_locked(job, "progress", event.preview)

    def finish(self, job_id: str, outcome: Outcome) -> None:
        """End a running job with its outcome: done, interrupted (an interrupt was requested or seen), or failed."""
        with self._cond:
            job = self._running.get(job_id)
            if job is None:
                return
            interrupted = outcome.interrupted or job.cancel_token.interrupted
            if outcome.error is not None:
                job.error_message = self._error_message(job, outcome.error, interrupted)
                job.error = _without_tracebacks(outcome.error)
                self._finish_locked(job, JobState.INTERRUPTED if interrupted else JobState.FAILED)
                return
            job.result = outcome.result
            if job.notes and isinstance(job.result, GenerationResult):
                job.result = replace(job.result, comments=(*job.result.comments, *job.notes))
            self._finish_locked(job, JobState.INTERRUPTED if interrupted else JobState.DONE)

    @staticmethod
    def _error_message(job: Job, error: BaseException, interrupted: bool) -> str:
        if isinstance(error, UserError):
            return str(error)
        if interrupted:
            return "interrupted"
        log.error("job %s (%s) failed", job.id, job.description, exc_info=error)
        return f"internal error: {type(error).__name__}: {error}"

    def _finish_locked(self, job: Job, state: JobState) -> None:
        job._state = state
        complete = state is JobState.DONE
        job._progress = replace(job._progress, fraction=1.0 if complete else job._progress.fraction,
                                eta=0.0 if complete else None)
        job.finished = time.time()
        job.work = None  # drop the work item (and the request/images it holds) right away
        self._running.pop(job.id, None)
        if job.group not in self._pending and all(other.group != job.group for other in self._running.values()):
            self._served.pop(job.group, None)  # an idle group is forgotten (it comes back as a new one)
        self._history.append(job.id)
        while len(self._history) > self._history_limit:
            self._jobs.pop(self._history.popleft(), None)
        self._publish_locked(job, "finished")
        job._done.set()

    # -- shutdown --------------------------------------------------------------------------------------------

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Cancel queued jobs, interrupt the running ones, end the executor and all subscriptions.
        Returns False if the executor did not end within `timeout` seconds (a job ignoring its cancel token)."""
        with self._cond:
            self._stopping = True
            for job in list(self._order_locked()):
                self._remove_pending_locked(job)
                self._finish_locked(job, JobState.CANCELLED)
            for job in list(self._running.values()):
                self._control_locked(job, Control.INTERRUPT)
            self._cond.notify_all()
        stopped = self._executor.shutdown(timeout)
        for subscription in list(self._subscriptions):
            subscription.close()
        return stopped


def _without_tracebacks(error: BaseException) -> BaseException:
    """`error` (and the errors it was raised from) without tracebacks, once logged: a kept traceback keeps every
    frame of the failed job alive, with its tensors (a failed job must not hold memory)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__
    return error
