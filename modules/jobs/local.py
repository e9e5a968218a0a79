"""`LocalThreadExecutor`: runs jobs on worker threads of this process, one thread per device (today one).

Each thread takes the next job from the queue, gives it a fresh `CancelToken` that `control()` sets, runs it
(a `GenerationWork` through the `GenerationRunner` it was built with, a `CallableWork` directly) and reports
the `Outcome`. A job that raises never ends the thread: the exception becomes the outcome. `on_idle` (given by
the composition root: the allocator's `release_free_memory`) runs once no job has run for `idle_after` seconds.
"""

from __future__ import annotations

import logging
import threading
from functools import partial
from typing import Any, Callable

from modules.cancel import CancelToken
from modules.jobs.executor import (
    Assignment,
    CallableWork,
    Control,
    GenerationRunner,
    GenerationWork,
    JobContext,
    JobSource,
    Outcome,
    WorkerInfo,
    WorkItem,
)
from modules.jobs.idle import IdleTimer

log = logging.getLogger(__name__)


class NoGenerationRunner(RuntimeError):
    """A generation was queued on an executor built without a generation runner."""


class LocalThreadExecutor:
    """`threads` worker threads named `job-worker-<name>`; `generation` runs `GenerationWork` items."""

    def __init__(self, generation: GenerationRunner | None = None, *, name: str = "default",
                 threads: int = 1, on_idle: Callable[[], None] | None = None, idle_after: float = 2.0) -> None:
        self.name = name
        self._generation = generation
        self._thread_count = threads
        self._threads: list[threading.Thread] = []
        self._tokens: dict[str, CancelToken] = {}
        self._lock = threading.Lock()
        self._idle = IdleTimer(on_idle, idle_after, f"executor {name!r}") if on_idle is not None else None

    def start(self, source: JobSource) -> None:
        if self._threads:
            raise RuntimeError(f"executor {self.name!r} already serves a queue")
        for index in range(self._thread_count):
            suffix = "" if self._thread_count == 1 else f"-{index}"
            thread = threading.Thread(target=self._loop, args=(source,), name=f"job-worker-{self.name}{suffix}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()

    def control(self, job_id: str, message: Control) -> None:
        """Set the job's token; a message that arrives before its thread has set up the job is kept for it."""
        token = self._token(job_id)
        if message is Control.INTERRUPT:
            token.interrupt()
        else:
            token.skip()

    def shutdown(self, timeout: float | None) -> bool:
        """Wait for the threads to end (after the queue stopped); False if one is still running a job."""
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        return not any(thread.is_alive() for thread in self._threads)

    def workers(self) -> list[WorkerInfo]:
        """None listed: the jobs run in this process, on the device the App's model manager uses."""
        return []

    def _token(self, job_id: str) -> CancelToken:
        with self._lock:
            return self._tokens.setdefault(job_id, CancelToken())

    def _loop(self, source: JobSource) -> None:
        while (assignment := source.take()) is not None:
            token = self._token(assignment.job_id)
            self._set_busy(+1)
            try:
                source.finish(assignment.job_id, self._run(assignment, token, source))
            finally:
                with self._lock:  # only now: the queue sends no control for a finished job
                    self._tokens.pop(assignment.job_id, None)
                self._set_busy(-1)

    def _set_busy(self, change: int) -> None:
        """Tell the idle timer (if any) that a job started (+1) or ended (-1)."""
        if self._idle is None:
            return
        if change > 0:
            self._idle.started()
        else:
            self._idle.ended()

    def _run(self, assignment: Assignment, token: CancelToken, source: JobSource) -> Outcome:
        context = JobContext(assignment.job_id, token, partial(source.progress, assignment.job_id))
        try:
            result = self._execute(assignment.work, context)
        except BaseException as exc:  # noqa: BLE001 - the worker must survive any job, even one calling sys.exit
            return Outcome(error=exc, interrupted=token.interrupted)
        return Outcome(result=result, interrupted=token.interrupted)

    def _execute(self, work: WorkItem, context: JobContext) -> Any:
        if isinstance(work, CallableWork):
            return work.fn(context)
        if isinstance(work, GenerationWork):
            if self._generation is None:
                raise NoGenerationRunner(f"executor {self.name!r} has no generation runner")
            return self._generation.run(work.request, context, save=work.save)
        raise TypeError(f"unknown work item {type(work).__name__}")
