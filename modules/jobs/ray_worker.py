"""`RayWorker`: the body of one Ray worker actor (`modules.jobs.ray_executor` wraps it with `ray.remote`).

A threaded actor: `run` executes one generation at a time; `events` (the driver's long poll for progress) and
`control` (interrupt, skip) run beside it on the actor's other threads. The worker builds its own
`GenerationStack` from the launch options it was given (its node's data folder), with a settings store that never
writes config.json. The job's model files (checkpoints, VAE, LoRAs, embeddings) arrive as `ModelRef`s in a
`JobFiles` and are looked up on this node by name and sha256 (`modules.jobs.job_files`); a node without one
answers `ModelNotOnWorker` and runs nothing.
At its start the worker process tunes the C allocator (`modules.allocator.tune_allocator`, as webui.py does for
the server, before any model loads) and, once it has been idle for `IDLE_SECONDS` after a job, hands the free
heap back to the system (`release_free_memory`, as the local executor's idle callback does).
Everything it returns is plain data (`WorkerReply`, `WorkerStatus`); an exception travels as a value, without its
traceback (kept as a note for the driver's log).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import pickle
import socket
import threading
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modules.allocator import release_free_memory, tune_allocator
from modules.cancel import CancelToken
from modules.errors import UserError
from modules.jobs.executor import Control, GenerationWork, JobContext
from modules.jobs.idle import IdleTimer
from modules.jobs.job_files import JobFiles, Localized, localize
from modules.types import ProgressEvent

if TYPE_CHECKING:
    from modules.bootstrap import GenerationStack
    from modules.cli import LaunchOptions
    from modules.settings import SettingsStore

log = logging.getLogger(__name__)

IDLE_SECONDS = 2.0
"""After a job, how long a worker stays idle before it releases the free memory of its heap."""


@dataclasses.dataclass(frozen=True)
class WorkerStatus:
    """Where a worker runs and what it holds: its process, host, device and loaded checkpoints (titles)."""

    pid: int
    node: str
    device: str
    loaded: tuple[str, ...]
    allocator: str = ""
    """What `tune_allocator` did at the worker's start (e.g. "glibc tuned", "tcmalloc preloaded")."""
    memory_releases: int = 0
    """How many times the idle worker has released its free memory."""


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
    status: WorkerStatus | None = None


class _RemoteJob:
    """A job's state on the worker: its cancel token and the progress events not yet fetched."""

    def __init__(self) -> None:
        self.token = CancelToken()
        self.events: list[ProgressEvent] = []
        self.done = False


class RayWorker:
    """The body of one worker actor; see the module docstring."""

    def __init__(self, index: int, launch: "LaunchOptions", settings: dict[str, Any] | None = None,
                 name: str | None = None, idle_after: float = IDLE_SECONDS) -> None:
        self.allocator = tune_allocator()  # first: before torch allocates anything in this process
        self.memory_releases = 0
        self._idle = IdleTimer(self._release_memory, idle_after, f"Ray {name or index}")
        self.index = index
        self.name = name or f"worker-{index}"
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

    def warm(self) -> WorkerStatus:
        """Build the generation stack now (the driver calls this at start); returns where the worker runs."""
        self._ensure_stack()
        return self.status()

    def status(self) -> WorkerStatus:
        return WorkerStatus(os.getpid(), socket.gethostname(), self._device(), tuple(self.loaded()),
                            self.allocator.reason, self.memory_releases)

    def loaded(self) -> list[str]:
        """Titles of the checkpoints in this worker's model cache."""
        stack = self._stack
        return [] if stack is None else [str(getattr(key, "title", key)) for key in stack.models.checkpoints.keys()]

    def run(self, job_id: str, work: GenerationWork, settings: dict[str, Any] | None = None,
            files: JobFiles | None = None) -> WorkerReply:
        """Run one generation; `settings` (the driver's snapshot, when it changed) is applied first, and the job's
        model `files` (as the driver resolved them, when known) are looked up on this node."""
        with self._run_lock:
            self._idle.started()
            started = time.time()
            job = self._job(job_id)
            result: Any = None
            error: BaseException | None = None
            self._saved = []
            try:
                stack = self._ensure_stack()
                if settings is not None:
                    self._apply_settings(settings)
                local = localize(stack, work.request, files, self.name) if files is not None \
                    else Localized(work.request)
                context = JobContext(job_id, job.token, lambda event: self._push(job, event))
                renamed = stack.models.substituted(local.checkpoints) if local.checkpoints else nullcontext()
                with stack.networks.substituted(local.loras, local.embeddings), renamed:
                    result = stack.generation.run(local.request, context, save=work.save)
            except BaseException as exc:  # noqa: BLE001 - the worker outlives any job; the error travels back
                error = self._portable(exc)
            finally:
                with self._cond:
                    job.done = True
                    self._cond.notify_all()
                self._idle.ended()
            return WorkerReply(result, error, job.token.interrupted, tuple(self._saved), self.index, os.getpid(),
                               started, time.time(), self._status_or_none())

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

    def _release_memory(self) -> None:
        release_free_memory()
        self.memory_releases += 1

    def _status_or_none(self) -> WorkerStatus | None:
        try:
            return self.status()
        except Exception:  # noqa: BLE001 - the job's reply matters more than the listing
            log.warning("%s: cannot describe this worker", self.name, exc_info=True)
            return None

    def _device(self) -> str:
        stack = self._stack
        if stack is None:
            return self._launch.device or "starting"
        gpus = importlib.import_module("ray").get_gpu_ids()
        described = stack.models.plan.describe()
        return described + (f" (GPU {', '.join(str(gpu) for gpu in gpus)})" if gpus else "")

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
            log.error("job failed on %s", self.name, exc_info=exc)
            exc.add_note(f"on Ray {self.name} (pid {os.getpid()}):\n"
                         + "".join(traceback.format_exception(exc)).rstrip())
        exc.__traceback__ = None
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001 - any pickling failure: send the text instead
            return RuntimeError(f"{type(exc).__name__}: {exc}")
        return exc
