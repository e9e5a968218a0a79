"""`RayExecutor`: runs generations on Ray actors, one per worker, each pinned to a device with its own model cache.

Used with `--workers N|auto` / `--ray-address ADDRESS` (`modules.bootstrap.build_executor`); Ray is imported only
by `RayExecutor.start`, so a server started without those flags never imports it. The design, and the numbers
behind it, are in docs/scale-out.md. In short:

- Each worker is a `RayWorker` actor (a threaded actor: one generation at a time, plus calls for progress and
  control next to it) that builds its own `GenerationStack` (`modules.bootstrap.build_generation_stack`) from the
  launch options, with a settings store that never writes config.json: this process sends the settings snapshot
  with a job whenever it changed since the worker last saw it.
- A dispatcher thread here takes the next job from the queue as soon as a worker is idle and picks the worker:
  one whose last job used the same checkpoint, else one that has none loaded yet, else the one idle longest.
- A `GenerationWork` travels as plain data (pickled by Ray); the worker returns the `GenerationResult` (PIL images:
  raw pixels, encoded to PNG here, where the API and UI encode them today) and the paths it saved, which this
  process records in the gallery. Exceptions come back as values (the worker's traceback as a note).
- Progress: a thread here per worker long-polls the actor's `events` (it answers as soon as events are buffered,
  or after `POLL_SECONDS`); previews between two polls are coalesced to the latest. Interrupt and skip call the
  actor's `control`, which sets the job's `CancelToken` there (a message that arrives before the job is kept).
- A worker that dies fails its running job with `WorkerLost` (a message for the user); Ray restarts the actor
  (`max_restarts`) and the next job runs on the fresh process.
- `CallableWork` (checkpoint switches, Extras, interrogate: closures over this process's objects) runs here, on
  the dispatcher thread, in queue order: jobs queued after it are dispatched once it has finished.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import pickle
import queue
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from modules.cancel import CancelToken
from modules.errors import UserError
from modules.jobs.executor import (
    Assignment,
    CallableWork,
    Control,
    GenerationWork,
    JobContext,
    JobSource,
    Outcome,
)
from modules.paths import REPO_ROOT
from modules.types import GenerationRequest, ProgressEvent

if TYPE_CHECKING:
    from modules.bootstrap import GenerationStack
    from modules.cli import LaunchOptions
    from modules.settings import Settings, SettingsStore

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
"""How long the actor's `events` call waits for an event before answering with none."""

CheckpointOf = Callable[[GenerationRequest, "Settings | None"], "str | None"]


class WorkerLost(UserError):
    """The worker process running the job died (killed, out of memory, node lost); the job failed."""

    http_status = 503


def _ray() -> Any:
    """The `ray` module, imported on first use (it is an optional dependency: requirements-ray.txt)."""
    return importlib.import_module("ray")


# -- the worker (a Ray actor) -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WorkerReply:
    """What a worker returns for one job: the outcome's parts, the files it saved, and when and where it ran."""

    result: Any
    error: BaseException | None
    interrupted: bool
    saved: tuple[str, ...]
    worker: int
    pid: int
    started: float
    finished: float


class _RemoteJob:
    """A job's state on the worker: its cancel token and the progress events not yet fetched."""

    def __init__(self) -> None:
        self.token = CancelToken()
        self.events: list[ProgressEvent] = []
        self.done = False


class RayWorker:
    """The body of one worker actor (a plain class: `RayExecutor` wraps it with `ray.remote`).

    `run` executes one job at a time; `events` and `control` run beside it on the actor's other threads."""

    def __init__(self, index: int, launch: "LaunchOptions", settings: dict[str, Any] | None = None) -> None:
        self.index = index
        self._launch = launch
        self._initial_settings = settings or {}
        self._stack: GenerationStack | None = None
        self._store: SettingsStore | None = None
        self._build_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._cond = threading.Condition()
        self._jobs: dict[str, _RemoteJob] = {}
        self._saved: list[str] = []

    def pid(self) -> int:
        return os.getpid()

    def warm(self) -> int:
        """Build the generation stack now (the executor calls this at start, without waiting); returns the pid."""
        self._ensure_stack()
        return os.getpid()

    def loaded(self) -> list[str]:
        """Titles of the checkpoints in this worker's model cache."""
        stack = self._stack
        return [] if stack is None else [str(getattr(key, "title", key)) for key in stack.models.checkpoints.keys()]

    def run(self, job_id: str, work: GenerationWork, settings: dict[str, Any] | None = None) -> WorkerReply:
        """Run one generation; `settings` (the driver's snapshot, when it changed) is applied first."""
        with self._run_lock:
            started = time.time()
            job = self._job(job_id)
            result: Any = None
            error: BaseException | None = None
            self._saved = []
            try:
                stack = self._ensure_stack()
                if settings is not None:
                    self._apply_settings(settings)
                context = JobContext(job_id, job.token, lambda event: self._push(job, event))
                result = stack.generation.run(work.request, context, save=work.save)
            except BaseException as exc:  # noqa: BLE001 - the worker outlives any job; the error travels back
                error = self._portable(exc)
            finally:
                with self._cond:
                    job.done = True
                    self._cond.notify_all()
            return WorkerReply(result, error, job.token.interrupted, tuple(self._saved), self.index, os.getpid(),
                               started, time.time())

    def events(self, job_id: str, wait: float) -> tuple[list[ProgressEvent], bool]:
        """The job's progress since the last call (waits up to `wait` seconds for one) and whether it has ended;
        the job is forgotten once its end has been reported."""
        with self._cond:
            job = self._job_locked(job_id)
            self._cond.wait_for(lambda: job.events or job.done, timeout=wait)
            events, job.events = job.events, []
            if job.done:
                self._jobs.pop(job_id, None)
            return events, job.done

    def control(self, job_id: str, message: str) -> None:
        """Interrupt or skip the job (kept for it if it has not started here yet)."""
        token = self._job(job_id).token
        if message == Control.INTERRUPT.value:
            token.interrupt()
        else:
            token.skip()

    # -- inside the worker --

    def _job(self, job_id: str) -> _RemoteJob:
        with self._cond:
            return self._job_locked(job_id)

    def _job_locked(self, job_id: str) -> _RemoteJob:
        return self._jobs.setdefault(job_id, _RemoteJob())

    def _push(self, job: _RemoteJob, event: ProgressEvent) -> None:
        with self._cond:
            if event.preview is not None:  # the driver only shows the latest preview: drop older unsent ones
                job.events = [dataclasses.replace(old, preview=None) if old.preview is not None else old
                              for old in job.events]
            job.events.append(event)
            self._cond.notify_all()

    def _ensure_stack(self) -> "GenerationStack":
        with self._build_lock:
            if self._stack is None:
                from modules.bootstrap import build_generation_stack
                from modules.settings import Settings, SettingsStore

                self._store = SettingsStore(Settings.from_mapping(self._initial_settings, launch=self._launch))
                self._stack = build_generation_stack(self._launch, self._store, self._saved_file)
            return self._stack

    def _saved_file(self, path: Path) -> None:
        self._saved.append(str(path))

    def _apply_settings(self, raw: dict[str, Any]) -> None:
        """Adopt the driver's settings snapshot (listeners such as the model manager hear of the changes)."""
        assert self._store is not None
        current = self._store.get()
        known = current.to_json()
        changes = {key: value for key, value in raw.items() if key in current.table and known.get(key) != value}
        if changes:
            self._store.update(changes, persist=False)

    def _portable(self, exc: BaseException) -> BaseException:
        """`exc` as it can travel back: without its traceback (kept as a note for the driver's log), or a
        RuntimeError with its text when it does not pickle."""
        if not isinstance(exc, UserError):
            log.error("job failed on worker %s", self.index, exc_info=exc)
            exc.add_note(f"on Ray worker {self.index} (pid {os.getpid()}):\n"
                         + "".join(traceback.format_exception(exc)).rstrip())
        exc.__traceback__ = None
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001 - any pickling failure: send the text instead
            return RuntimeError(f"{type(exc).__name__}: {exc}")
        return exc


# -- the driver's side --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WorkerRun:
    """One job as a worker ran it (what `RayExecutor.runs` records)."""

    job_id: str
    worker: int
    pid: int
    started: float
    finished: float


class _Slot:
    """One worker actor as the driver sees it."""

    def __init__(self, index: int, actor: Any) -> None:
        self.index = index
        self.actor = actor
        self.busy = False
        self.checkpoint: str | None = None
        self.settings_sent: Any = None
        self.idle_since = time.monotonic()
        self.inbox: queue.SimpleQueue[tuple[Assignment, str | None] | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None


class RayExecutor:
    """An `Executor` (see `modules.jobs.executor`) over `workers` Ray actors; see the module docstring.

    `workers`: a count, "auto" (one per GPU of the cluster, 1 without GPUs); default from `launch`.
    `address`: a Ray cluster to join (default `launch.ray_address`; None starts a local one unless Ray is already
    initialised in this process). `settings`: the App's store, whose snapshot travels to the workers.
    `on_saved`: told of every file a worker saved. `checkpoint_of(request, settings)`: the checkpoint a job will
    use (for affinity; None when unknown). `init_options`: extra `ray.init` arguments."""

    def __init__(self, launch: "LaunchOptions", *, workers: int | str | None = None, address: str | None = None,
                 settings: "SettingsStore | None" = None, on_saved: Callable[[Path], None] | None = None,
                 checkpoint_of: CheckpointOf | None = None, init_options: dict[str, Any] | None = None,
                 max_restarts: int = 3, name: str = "default") -> None:
        self.name = name
        self._launch = launch
        self._workers = workers if workers is not None else (launch.workers or "auto")
        self._address = address if address is not None else launch.ray_address
        self._settings = settings
        self._on_saved = on_saved
        self._checkpoint_of = checkpoint_of
        self._init_options = dict(init_options or {})
        self._max_restarts = max_restarts
        self._cond = threading.Condition()
        self._slots: list[_Slot] = []
        self._tokens: dict[str, CancelToken] = {}
        self._placement: dict[str, _Slot] = {}
        self._dispatcher: threading.Thread | None = None
        self._owns_ray = False
        self.runs: list[WorkerRun] = []
        """Every job a worker finished (failed ones too), in finishing order: for tests and the bench."""

    # -- Executor --

    def start(self, source: JobSource) -> None:
        if self._dispatcher is not None:
            raise RuntimeError(f"executor {self.name!r} already serves a queue")
        ray = _ray()
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, **self._init_options}
            ray.init(address=self._address, **options)
            self._owns_ray = True
        gpus = float(ray.cluster_resources().get("GPU", 0))
        count = self._worker_count(gpus)
        per_worker_gpus = min(1.0, gpus / count) if gpus else 0
        launch = dataclasses.replace(self._launch, workers=None, ray_address=None,
                                     device="cuda" if per_worker_gpus else self._launch.device)
        settings = self._settings.get().to_json() if self._settings is not None else None
        paths = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        actor_class = ray.remote(RayWorker).options(
            num_cpus=1, num_gpus=per_worker_gpus, max_restarts=self._max_restarts, max_concurrency=4,
            runtime_env={"env_vars": {"PYTHONPATH": paths}})
        for index in range(count):
            slot = _Slot(index, actor_class.remote(index, launch, settings))
            slot.actor.warm.remote()  # build the stack in the background; the first job waits for it
            slot.thread = threading.Thread(target=self._slot_loop, args=(slot, source),
                                           name=f"ray-worker-{self.name}-{index}", daemon=True)
            self._slots.append(slot)
            slot.thread.start()
        log.info("%d Ray worker(s) started (%s GPU each)", count, per_worker_gpus or "no")
        self._dispatcher = threading.Thread(target=self._dispatch_loop, args=(source,),
                                            name=f"ray-dispatch-{self.name}", daemon=True)
        self._dispatcher.start()

    def control(self, job_id: str, message: Control) -> None:
        """Record the message (a job not yet placed gets it on placement) and send it to the job's worker."""
        with self._cond:
            token = self._tokens.setdefault(job_id, CancelToken())
            if message is Control.INTERRUPT:
                token.interrupt()
            else:
                token.skip()
            slot = self._placement.get(job_id)
        if slot is not None:
            slot.actor.control.remote(job_id, message.value)  # returns at once; the reply is not awaited

    def shutdown(self, timeout: float | None) -> bool:
        """After the queue stopped: wait for the dispatcher and the workers' threads, then end the actors (and the
        local Ray cluster if this executor started it). False if a job was still running at `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        threads = [self._dispatcher, *(slot.thread for slot in self._slots)]
        for thread in threads:
            if thread is not None and thread is not threading.current_thread():
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        stopped = not any(thread is not None and thread.is_alive() for thread in threads)
        ray = _ray()
        for slot in self._slots:
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if self._owns_ray:
            ray.shutdown()
        return stopped

    # -- what tests, the API and the UI can read --

    @property
    def worker_count(self) -> int:
        return len(self._slots)

    def worker_of(self, job_id: str) -> int | None:
        """The index of the worker running `job_id` (None when it is not running on one)."""
        with self._cond:
            slot = self._placement.get(job_id)
        return None if slot is None else slot.index

    def worker_pid(self, index: int, timeout: float = 60.0) -> int:
        return int(_ray().get(self._slots[index].actor.pid.remote(), timeout=timeout))

    def loaded(self, timeout: float = 10.0) -> list[list[str]]:
        """Per worker, the checkpoints in its model cache."""
        ray = _ray()
        return [list(ray.get(slot.actor.loaded.remote(), timeout=timeout)) for slot in self._slots]

    # -- the driver's threads --

    def _worker_count(self, gpus: float) -> int:
        if self._workers == "auto":
            return max(1, int(gpus))
        count = int(self._workers)
        if count < 1:
            raise ValueError(f"need at least one worker, got {count}")
        return count

    def _dispatch_loop(self, source: JobSource) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: any(not slot.busy for slot in self._slots))
            assignment = source.take()
            if assignment is None:
                break
            work = assignment.work
            if isinstance(work, CallableWork):
                source.finish(assignment.job_id, self._run_local(assignment.job_id, work, source))
                continue
            if not isinstance(work, GenerationWork):
                source.finish(assignment.job_id, Outcome(error=TypeError(f"unknown work item {type(work).__name__}")))
                continue
            key = self._checkpoint_key(work.request)
            with self._cond:
                slot = self._choose(key)
                slot.busy = True
            slot.inbox.put((assignment, key))
        for slot in self._slots:
            slot.inbox.put(None)

    def _choose(self, key: str | None) -> _Slot:
        """Among the idle workers: the one whose last job used checkpoint `key`, else one with no checkpoint yet,
        else the one idle longest."""
        idle = [slot for slot in self._slots if not slot.busy]
        for slot in idle:
            if key is not None and slot.checkpoint == key:
                return slot
        for slot in idle:
            if slot.checkpoint is None:
                return slot
        return min(idle, key=lambda slot: slot.idle_since)

    def _checkpoint_key(self, request: GenerationRequest) -> str | None:
        if self._checkpoint_of is None:
            return request.checkpoint
        try:
            return self._checkpoint_of(request, self._settings.get() if self._settings is not None else None)
        except Exception:  # noqa: BLE001 - a bad name fails on the worker, with the worker's message
            return None

    def _run_local(self, job_id: str, work: CallableWork, source: JobSource) -> Outcome:
        """A `CallableWork` in this process (the queue's order holds: nothing else is dispatched meanwhile)."""
        with self._cond:
            token = self._tokens.setdefault(job_id, CancelToken())
        context = JobContext(job_id, token, lambda event: source.progress(job_id, event))
        try:
            result = work.fn(context)
        except BaseException as exc:  # noqa: BLE001 - the dispatcher must survive any job
            return Outcome(error=exc, interrupted=token.interrupted)
        finally:
            with self._cond:
                self._tokens.pop(job_id, None)
        return Outcome(result=result, interrupted=token.interrupted)

    def _slot_loop(self, slot: _Slot, source: JobSource) -> None:
        while (item := slot.inbox.get()) is not None:
            assignment, key = item
            try:
                outcome = self._run_remote(slot, assignment, key, source)
            except BaseException as exc:  # noqa: BLE001 - the slot's thread must survive any job
                outcome = Outcome(error=exc)
            source.finish(assignment.job_id, outcome)
            with self._cond:
                self._placement.pop(assignment.job_id, None)
                self._tokens.pop(assignment.job_id, None)
                slot.busy = False
                slot.idle_since = time.monotonic()
                self._cond.notify_all()

    def _run_remote(self, slot: _Slot, assignment: Assignment, key: str | None, source: JobSource) -> Outcome:
        ray = _ray()
        job_id, work = assignment.job_id, assignment.work
        snapshot = self._settings.get() if self._settings is not None else None
        payload = snapshot.to_json() if snapshot is not None and snapshot is not slot.settings_sent else None
        run = slot.actor.run.remote(job_id, work, payload)
        with self._cond:
            self._placement[job_id] = slot
            token = self._tokens.get(job_id)
        if token is not None and token.interrupted:
            slot.actor.control.remote(job_id, Control.INTERRUPT.value)
        if token is not None and token.skipped:
            slot.actor.control.remote(job_id, Control.SKIP.value)
        try:
            while True:
                events, done = ray.get(slot.actor.events.remote(job_id, POLL_SECONDS))
                for event in events:
                    source.progress(job_id, event)
                if done:
                    break
                if ray.wait([run], timeout=0)[0]:  # the run ended without a final report: a worker restarted
                    break
            reply: WorkerReply = ray.get(run)
        except ray.exceptions.RayActorError as exc:
            slot.checkpoint = slot.settings_sent = None
            interrupted = token is not None and token.interrupted
            log.warning("Ray worker %d died while running job %s: %s", slot.index, job_id, exc)
            return Outcome(error=WorkerLost(
                f"The worker process running this job (worker {slot.index}) stopped before the job ended; the "
                f"job failed. Ray restarts the worker, and the next job runs normally."), interrupted=interrupted)
        slot.settings_sent = snapshot if reply.error is None else None  # on an error it may not have been applied
        if reply.error is None:
            slot.checkpoint = key
        with self._cond:
            self.runs.append(WorkerRun(job_id, reply.worker, reply.pid, reply.started, reply.finished))
        if self._on_saved is not None:
            for path in reply.saved:
                self._on_saved(Path(path))
        return Outcome(result=reply.result, error=reply.error, interrupted=reply.interrupted)
