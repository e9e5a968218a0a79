"""`RayExecutor`: runs generations on Ray actors, one per worker, each pinned to a device with its own model cache.

Used with `--workers N|auto` / `--ray-address ADDRESS` (`modules.bootstrap.build_executor`); Ray is imported only
by `RayExecutor.start`, so a server started without those flags never imports it. The design, and the numbers
behind it, are in docs/scale-out.md. In short:

- Each worker is a `RayWorker` actor (`modules.jobs.ray_worker`) named `worker-<index>`, with its own
  `GenerationStack`; this process sends the settings snapshot with a job whenever it changed since the worker
  last saw it, and names the job's model files (checkpoints, VAEs, LoRAs, embeddings) by title, name and sha256
  (`JobFiles` of `ModelRef`s).
- A dispatcher thread here takes the next job from the queue as soon as a worker is idle and ready (started, or
  restarted after a loss and answering its ready check) and picks one by `modules.jobs.routing`: one whose last
  job used the same checkpoint, else the busy one holding it when it should finish before another could load it
  (the job then queues behind it), else one that has none loaded yet, else the one idle longest; never one that
  said, less than `MISSING_RECHECK_SECONDS` ago, that its node lacks one of the job's files. A worker that says so
  hands the job to another (the job fails, naming the file, when every worker lacks one).
- A `GenerationWork` travels as plain data (pickled by Ray); the worker returns the `GenerationResult` (PIL images:
  raw pixels, encoded to PNG here, where the API and UI encode them today) and the paths it saved, which this
  process records in the gallery. Exceptions come back as values (the worker's traceback as a note).
- Progress: a thread here per worker long-polls the actor's `events` (it answers as soon as events are buffered,
  or after `POLL_SECONDS`); previews between two polls are coalesced to the latest. Interrupt and skip call the
  actor's `control`, which sets the job's `CancelToken` there (a message that arrives before the job is kept).
- A worker that dies puts its running job back in the queue once (`JobSource.requeue`: first of its user's jobs,
  with a note in its comments); a second loss fails it with `WorkerLost`. Ray restarts the actor (`max_restarts`).
- `CallableWork` (checkpoint switches, Extras, interrogate: closures over this process's objects) runs here, on
  the dispatcher thread, in queue order: jobs queued after it are dispatched once it has finished.
- `workers()` lists the workers (name, device, host, state, job, loaded checkpoints) from what they last reported.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from modules.cancel import CancelToken
from modules.errors import ModelNotFound, UserError
from modules.jobs.executor import (
    Assignment,
    CallableWork,
    Control,
    GenerationWork,
    JobContext,
    JobSource,
    Outcome,
    WorkerInfo,
)
from modules.jobs.job_files import JobFiles
from modules.jobs.ray_worker import RayWorker, WorkerReply, WorkerStatus
from modules.jobs.routing import WorkerView, choose_worker, progress_fraction
from modules.models.by_hash import ModelNotOnWorker, ModelRef
from modules.paths import REPO_ROOT
from modules.types import GenerationRequest

if TYPE_CHECKING:
    from modules.cli import LaunchOptions
    from modules.settings import Settings, SettingsStore

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
"""How long the actor's `events` call waits for an event before answering with none."""
READY_CHECK_SECONDS = 5.0
"""After a worker was lost, how long one ready check waits for the restarted process before asking again; no job
is placed on the worker until one answers."""
MISSING_RECHECK_SECONDS = 300.0
"""A worker that said its node lacks a model file is not offered jobs needing it for this long (then asked again:
the file may have been copied there)."""

FilesOf = Callable[[GenerationRequest, "Settings | None"], "JobFiles | None"]
WorkerLaunch = Callable[[int, "LaunchOptions"], "LaunchOptions"]


class WorkerLost(UserError):
    """The worker process running the job died (killed, out of memory, node lost) twice; the job failed."""

    http_status = 503


def _ray() -> Any:
    """The `ray` module, imported on first use (it is an optional dependency: requirements-ray.txt)."""
    return importlib.import_module("ray")


# -- the driver's side --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WorkerRun:
    """One job as a worker ran it (what `RayExecutor.runs` records)."""

    job_id: str
    worker: int
    pid: int
    started: float
    finished: float


_Placed = tuple[Assignment, "JobFiles | None", "str | None"]  # the job, its model files, its affinity key


class _Slot:
    """One worker actor as the driver sees it (its fields change under the executor's lock)."""

    def __init__(self, index: int, actor: Any) -> None:
        self.index = index
        self.name = f"worker-{index}"
        self.actor = actor
        self.pending = 0  # jobs placed on it and not finished (its running one included)
        self.ready = False  # False while it starts, or restarts after a loss: no job is placed on it then
        self.dead = False  # Ray gave up restarting it: out of routing for good
        self.started: float | None = None  # when its running job started (monotonic)
        self.fraction = 0.0  # how much of that job is done
        self.job_id: str | None = None
        self.checkpoint: str | None = None
        self.settings_sent: Any = None
        self.idle_since = time.monotonic()
        self.status: WorkerStatus | None = None  # None: starting (or restarting after a loss)
        self.problem = ""
        self.jobs_done = 0
        self.missing: dict[str, float] = {}  # a file's `ModelRef.key` -> when the worker said it lacks it
        self.inbox: queue.SimpleQueue[_Placed | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        return self.pending > 0

    def view(self) -> WorkerView:
        return WorkerView(self.index, self.checkpoint, self.pending, self.idle_since, self.started, self.fraction)

    def lacking(self, files: JobFiles | None, now: float) -> ModelRef | None:
        """The first of `files` this worker said, recently, that its node lacks."""
        for ref in () if files is None else files.refs():
            reported = self.missing.get(ref.key)
            if reported is not None and now - reported < MISSING_RECHECK_SECONDS:
                return ref
        return None

    def info(self) -> WorkerInfo:
        status = self.status
        state = "busy" if self.busy else "idle" if status is not None else "unavailable" if self.problem \
            else "starting"
        if status is None:
            return WorkerInfo(self.name, "", state, self.job_id, jobs_done=self.jobs_done)
        return WorkerInfo(self.name, status.device, state, self.job_id, status.loaded, status.node, status.pid,
                          self.jobs_done)


class RayExecutor:
    """An `Executor` (see `modules.jobs.executor`) over `workers` Ray actors; see the module docstring.

    `workers`: a count, "auto" (one per GPU of the cluster, 1 without GPUs); default from `launch`.
    `address`: a Ray cluster to join (default `launch.ray_address`; None starts a local one unless Ray is already
    initialised in this process). `settings`: the App's store, whose snapshot travels to the workers.
    `on_saved`: told of every file a worker saved. `files_of(request, settings)`: the model files a job will
    use (for affinity and the lookup on the worker's node; None when unknown). `worker_launch(index, launch)`: the
    launch options of worker `index` (default: these; e.g. a data folder of its own). `init_options`: extra
    `ray.init` arguments."""

    def __init__(self, launch: "LaunchOptions", *, workers: int | str | None = None, address: str | None = None,
                 settings: "SettingsStore | None" = None, on_saved: Callable[[Path], None] | None = None,
                 files_of: FilesOf | None = None, worker_launch: WorkerLaunch | None = None,
                 init_options: dict[str, Any] | None = None, max_restarts: int = 3, name: str = "default") -> None:
        self.name = name
        self._launch = launch
        self._workers = workers if workers is not None else (launch.workers or "auto")
        self._address = address if address is not None else launch.ray_address
        self._settings = settings
        self._on_saved = on_saved
        self._files_of = files_of
        self._worker_launch = worker_launch
        self._init_options = dict(init_options or {})
        self._max_restarts = max_restarts
        self._cond = threading.Condition()
        self._slots: list[_Slot] = []
        self._tokens: dict[str, CancelToken] = {}
        self._placement: dict[str, _Slot] = {}
        self._requeued: set[str] = set()
        self._load_seconds: dict[str, float] = {}  # checkpoint title -> the last measured switch to it, in seconds
        self._stopping = False
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
            own = self._worker_launch(index, launch) if self._worker_launch is not None else launch
            slot = _Slot(index, actor_class.remote(index, own, settings, f"worker-{index}"))
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

    def workers(self) -> list[WorkerInfo]:
        """The workers as they last reported (no call to them is made)."""
        with self._cond:
            return [slot.info() for slot in self._slots]

    # -- what tests and the bench can read --

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
        """Per worker, the checkpoints in its model cache (asked of the workers now)."""
        ray = _ray()
        return [list(ray.get(slot.actor.loaded.remote(), timeout=timeout)) for slot in self._slots]

    # -- the dispatcher --

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
                self._cond.wait_for(lambda: any(slot.ready and not slot.busy for slot in self._slots)
                                    or all(slot.dead for slot in self._slots))
            assignment = source.take()
            if assignment is None:
                break
            work = assignment.work
            if isinstance(work, CallableWork):
                source.finish(assignment.job_id, self._run_local(assignment.job_id, work, source))
            elif isinstance(work, GenerationWork):
                files = self._job_files(work.request)
                checkpoint = files.checkpoint if files is not None else None
                self._place(assignment, files, checkpoint.title if checkpoint else work.request.checkpoint, source)
            else:
                source.finish(assignment.job_id, Outcome(error=TypeError(f"unknown work item {type(work).__name__}")))
        with self._cond:
            self._stopping = True
            for slot in self._slots:
                slot.inbox.put(None)
            self._cond.notify_all()

    def _place(self, assignment: Assignment, files: JobFiles | None, key: str | None, source: JobSource) -> None:
        """Hand the job to the best idle worker whose node may have its files (waits for one to be idle); fail it
        when every worker said its node lacks one of them. The item enters the inbox under the lock, so it is never
        queued behind a worker's end-of-work mark."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                alive = [slot for slot in self._slots if not slot.dead]
                able = [slot for slot in alive if slot.lacking(files, now) is None]
                views = [slot.view() for slot in able if slot.ready]
                index = choose_worker(views, key, now, self._load_seconds.get(key) if key else None)
                if index is not None:
                    slot = self._slots[index]
                    slot.pending += 1
                    slot.inbox.put((assignment, files, key))
                    return
                if not able:
                    break
                self._cond.wait()
            stopping = self._stopping
            lacking = {slot.name: slot.lacking(files, time.monotonic()) for slot in self._slots}
        if stopping:
            source.finish(assignment.job_id, Outcome(error=UserError("The server stopped before the job ran."),
                                                     interrupted=True))
        elif not alive:
            source.finish(assignment.job_id, Outcome(error=WorkerLost(
                "Every worker process has stopped for good (Ray gave up restarting them); restart the server.")))
        else:
            source.finish(assignment.job_id, Outcome(error=ModelNotFound(self._nowhere(lacking))))

    @staticmethod
    def _nowhere(lacking: dict[str, ModelRef | None]) -> str:
        """The message of a job whose files no worker has all of (`lacking`: what each worker lacks)."""
        refs = set(lacking.values())
        only = next(iter(refs)) if len(refs) == 1 else None
        if only is not None:
            return (f"No worker has {only.describe()}: each of the {len(lacking)} worker(s) looked in "
                    f"its node's models folder. Copy the file there (any name: it is found by its sha256).")
        each = ", ".join(f"{name} lacks {ref.describe()}" for name, ref in lacking.items() if ref is not None)
        return (f"No worker has every model file this job needs: {each}. Copy the files there (any name: they are "
                f"found by their sha256).")

    def _job_files(self, request: GenerationRequest) -> JobFiles | None:
        if self._files_of is None:
            return None
        try:
            return self._files_of(request, self._settings.get() if self._settings is not None else None)
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

    # -- a worker's thread --

    def _slot_loop(self, slot: _Slot, source: JobSource) -> None:
        self._await_ready(slot)
        while (item := slot.inbox.get()) is not None:
            assignment, files, key = item
            job_id = assignment.job_id
            try:
                outcome = self._run_remote(slot, assignment, files, key, source)
            except BaseException as exc:  # noqa: BLE001 - the slot's thread must survive any job
                outcome = Outcome(error=exc)
            missing = outcome is not None and isinstance(outcome.error, ModelNotOnWorker)
            with self._cond:
                self._placement.pop(job_id, None)
                if missing and outcome is not None and isinstance(outcome.error, ModelNotOnWorker):
                    slot.missing[outcome.error.ref.key] = time.monotonic()
                if not missing:
                    self._tokens.pop(job_id, None)
                if not missing and outcome is not None:
                    self._requeued.discard(job_id)
                slot.pending -= 1
                slot.job_id = slot.started = None
                slot.fraction = 0.0
                slot.idle_since = time.monotonic()
                self._cond.notify_all()
            if missing:
                log.info("%s: %s; placing the job on another worker", slot.name, outcome.error if outcome else "")
                self._place(assignment, files, key, source)
            elif outcome is not None:  # None: it went back to the queue
                source.finish(job_id, outcome)
            if not slot.ready:  # its worker was lost: Ray restarts it
                self._await_ready(slot)

    def _await_ready(self, slot: _Slot) -> None:
        """Wait until the slot's actor answers `warm` (its stack built, where it runs); only then are jobs placed on
        it. Asks again every `READY_CHECK_SECONDS` while it (re)starts. A start that fails marks it unavailable (the
        jobs placed on it fail with that error); one Ray gave up restarting leaves the routing for good."""
        ray = _ray()
        check, failures = slot.actor.warm.remote(), 0
        while not self._stopping:
            try:
                if not ray.wait([check], timeout=READY_CHECK_SECONDS)[0]:
                    continue
                status = ray.get(check)
            except ray.exceptions.RayActorError as exc:
                failures += 1
                if failures <= self._max_restarts:
                    time.sleep(0.5)
                    check = slot.actor.warm.remote()
                    continue
                log.error("Ray %s stopped for good: %s", slot.name, exc)
                self._set_ready(slot, None, str(exc), dead=True)
                return
            except Exception as exc:  # noqa: BLE001 - its jobs fail with the same error; the listing says so
                log.error("Ray %s did not start: %s", slot.name, exc)
                self._set_ready(slot, None, str(exc))
                return
            self._set_ready(slot, status, "")
            return

    def _set_ready(self, slot: _Slot, status: WorkerStatus | None, problem: str, dead: bool = False) -> None:
        with self._cond:
            slot.status, slot.problem, slot.ready, slot.dead = status, problem, True, dead
            self._cond.notify_all()

    def _run_remote(self, slot: _Slot, assignment: Assignment, files: JobFiles | None, key: str | None,
                    source: JobSource) -> Outcome | None:
        """Run the job on the slot's actor, relaying its progress; None when a lost worker put it back in the queue."""
        ray = _ray()
        job_id, work = assignment.job_id, assignment.work
        snapshot = self._settings.get() if self._settings is not None else None
        payload = snapshot.to_json() if snapshot is not None and snapshot is not slot.settings_sent else None
        run = slot.actor.run.remote(job_id, work, payload, files)
        with self._cond:
            self._placement[job_id] = slot
            slot.job_id = job_id
            slot.started, slot.fraction = time.monotonic(), 0.0
            token = self._tokens.get(job_id)
        source.placed(job_id, slot.name)
        if token is not None and token.interrupted:
            slot.actor.control.remote(job_id, Control.INTERRUPT.value)
        if token is not None and token.skipped:
            slot.actor.control.remote(job_id, Control.SKIP.value)
        try:
            while True:
                events, done = ray.get(slot.actor.events.remote(job_id, POLL_SECONDS))
                for event in events:
                    source.progress(job_id, event)
                if events:
                    slot.fraction = progress_fraction(events[-1])
                if done:
                    break
                if ray.wait([run], timeout=0)[0]:  # the run ended without a final report: a worker restarted
                    break
            reply: WorkerReply = ray.get(run)
        except ray.exceptions.RayActorError as exc:
            return self._lost(slot, job_id, token is not None and token.interrupted, source, exc)
        slot.settings_sent = snapshot if reply.error is None else None  # on an error it may not have been applied
        with self._cond:
            if reply.error is None:
                self._measure_load(slot, key, reply)
                slot.checkpoint = key
            slot.status = reply.status or slot.status
            slot.jobs_done += 1
            self.runs.append(WorkerRun(job_id, reply.worker, reply.pid, reply.started, reply.finished))
        if self._on_saved is not None:
            for path in reply.saved:
                self._on_saved(Path(path))
        return Outcome(result=reply.result, error=reply.error, interrupted=reply.interrupted)

    def _measure_load(self, slot: _Slot, key: str | None, reply: WorkerReply) -> None:
        """After a job that switched the worker to checkpoint `key`: the part of its time outside the generation core
        (loading the checkpoint, mostly) is that checkpoint's load time, as `choose_worker` reads it."""
        total = getattr(reply.result, "timings", {}).get("total")
        if key is not None and slot.checkpoint != key and isinstance(total, float):
            self._load_seconds[key] = max(0.0, reply.finished - reply.started - total)

    def _lost(self, slot: _Slot, job_id: str, interrupted: bool, source: JobSource, exc: Exception) -> Outcome | None:
        """The slot's worker died running `job_id`: put the job back in the queue once, else fail it."""
        log.warning("Ray %s died while running job %s: %s", slot.name, job_id, exc)
        with self._cond:
            slot.checkpoint = slot.settings_sent = None
            slot.status = None  # Ray restarts it; its ready check tells the new process
            slot.ready = False  # no job is placed on it until the restarted process answers
            again = job_id in self._requeued
        note = (f"The worker process running this job ({slot.name}) stopped before the job ended; the job was "
                f"queued again and started over.")
        if not interrupted and not again and source.requeue(job_id, note):
            with self._cond:
                self._requeued.add(job_id)
            return None
        second = " for the second time (it had been queued again once)" if again else ""
        return Outcome(error=WorkerLost(
            f"The worker process running this job ({slot.name}) stopped before the job ended{second}; the job "
            f"failed. Ray restarts the worker, and the next job runs normally."), interrupted=interrupted)
