"""The executor seam: what crosses between the job queue (order and state) and the place a job runs.

The queue (`JobQueue`) owns order, job state, history, subscriptions and ETA; an `Executor` runs jobs somewhere
(today `LocalThreadExecutor`: a thread per device in this process; later a worker process or a Ray actor per GPU).

Who calls what:
- `JobQueue(executor=...)` calls `executor.start(source)` once; the executor's workers then call, from their own
  threads, `source.take()` (blocks until a job is due, None when the queue stops), `source.placed(job_id,
  worker)` when a named worker starts it (optional), `source.progress(job_id, event)` while it runs and
  `source.finish(job_id, outcome)` exactly once at the end, unless `source.requeue(job_id, note)` put the job
  back in the queue (a worker lost mid-job; the queue allows it once per job), after which `take()` hands it out
  again.
- The queue calls `executor.control(job_id, Control.INTERRUPT | SKIP)` from any thread, holding its lock: it must
  not block and must not call back into the queue. `executor.shutdown(timeout)` after the queue has stopped.
  `executor.workers()` describes the executor's named workers (`WorkerInfo`; none for the local thread).

Plain data: `Assignment` (job id + work item), `GenerationWork` (a `GenerationRequest` and the save flag),
`Control`, `ProgressEvent` (previews are PIL images) and `Outcome` (result, or the exception, both picklable) are
all an executor in another process needs. `CallableWork` wraps a function and only runs in this process.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Union

from modules.cancel import CancelToken
from modules.types import GenerationRequest, GenerationResult, ProgressEvent


class Control(str, enum.Enum):
    """A control message for a running job: interrupt keeps the finished images, skip ends the current batch."""

    INTERRUPT = "interrupt"
    SKIP = "skip"


@dataclass(frozen=True)
class GenerationWork:
    """A generation to run: the request and whether to save (None: follow the samples_save option)."""

    request: GenerationRequest
    save: bool | None = None


@dataclass(frozen=True)
class CallableWork:
    """A function of the job context, run as is (checkpoint switches, tests). In-process executors only."""

    fn: Callable[["JobContext"], Any]


WorkItem = Union[GenerationWork, CallableWork]


@dataclass(frozen=True)
class Assignment:
    """One job handed to an executor by `JobSource.take()`."""

    job_id: str
    work: WorkItem


@dataclass(frozen=True)
class Outcome:
    """How a job ended: its result, or the exception it raised; `interrupted` if the worker saw an interrupt."""

    result: Any = None
    error: BaseException | None = None
    interrupted: bool = False


@dataclass(frozen=True)
class WorkerInfo:
    """One worker of an executor as the API and the UI list it (`GET /api/v1/workers`, the Queue panel).

    `state`: "starting" (building its models stack), "idle" or "busy"; `checkpoints`: the titles in its model
    cache as of its last job (the driver's view: no call to the worker is made to list them)."""

    name: str
    device: str
    state: str
    job_id: str | None = None
    checkpoints: tuple[str, ...] = ()
    node: str = ""
    pid: int | None = None
    jobs_done: int = 0


class JobContext:
    """What running work receives, on the executor's side: its cancel token and a way to report progress."""

    def __init__(self, job_id: str, cancel: CancelToken, report: Callable[[ProgressEvent], None]) -> None:
        self._job_id = job_id
        self._cancel = cancel
        self._report = report

    @property
    def job_id(self) -> str:
        return self._job_id

    @property
    def cancel(self) -> CancelToken:
        return self._cancel

    def report(self, event: ProgressEvent) -> None:
        """Send progress (with a preview image if the event has one) to the queue and its subscribers."""
        self._report(event)


class JobSource(Protocol):
    """The queue as an executor sees it; every method may be called from any executor thread."""

    def take(self) -> Assignment | None: ...

    def placed(self, job_id: str, worker: str) -> None: ...

    def progress(self, job_id: str, event: ProgressEvent) -> None: ...

    def finish(self, job_id: str, outcome: Outcome) -> None: ...

    def requeue(self, job_id: str, note: str) -> bool: ...


class Executor(Protocol):
    """Runs the jobs a `JobSource` hands out; see the module docstring for the calling rules."""

    def start(self, source: JobSource) -> None: ...

    def control(self, job_id: str, message: Control) -> None: ...

    def shutdown(self, timeout: float | None) -> bool: ...

    def workers(self) -> list[WorkerInfo]: ...


class GenerationRunner(Protocol):
    """Runs one generation on the executor's side (`modules.processing.GenerationService`, or a test fake)."""

    def run(self, request: GenerationRequest, ctx: JobContext, *, save: bool | None = None) -> GenerationResult:
        ...
