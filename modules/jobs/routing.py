"""Which Ray worker gets the next job: checkpoint affinity, with the rule for a busy worker that holds the checkpoint.

Pure functions over `WorkerView`s (what the dispatcher knows of each worker), so the rule is tested without Ray.
In order: an idle worker whose last job used the job's checkpoint; else the busy worker that holds it, when it has
nothing queued behind its current job and is expected to finish that job sooner than an idle worker would load
the checkpoint (`wait_for_holder`); else an idle worker with no checkpoint yet; else the one idle longest; else
(no idle worker) wait. "Expected to finish": the current job's elapsed time scaled by its progress
(`remaining_seconds`); "load": the last measured switch to that checkpoint on any worker. Either unknown (no
progress yet, never measured) means no waiting: the idle worker takes the job, and its run measures the load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from modules.types import ProgressEvent


@dataclass(frozen=True)
class WorkerView:
    """One worker as the rule sees it. `pending`: jobs placed on it and not finished (its running one included);
    `started`: when its running job started (monotonic seconds); `fraction`: how much of that job is done."""

    index: int
    checkpoint: str | None
    pending: int
    idle_since: float
    started: float | None = None
    fraction: float = 0.0


def progress_fraction(event: ProgressEvent) -> float:
    """The share of a job done at `event` (its batches count equally)."""
    steps = event.step / event.total_steps if event.total_steps > 0 else 0.0
    return min(1.0, (event.job_no + steps) / max(1, event.job_count))


def remaining_seconds(worker: WorkerView, now: float) -> float | None:
    """How long the worker's running job should still take, from its elapsed time and progress (None: unknown)."""
    if worker.started is None or worker.fraction <= 0.0:
        return None
    elapsed = max(0.0, now - worker.started)
    return elapsed * (1.0 - worker.fraction) / worker.fraction


def wait_for_holder(remaining: float | None, load_seconds: float | None) -> bool:
    """Whether to queue the job behind the busy holder of its checkpoint rather than load it on an idle worker."""
    return remaining is not None and load_seconds is not None and remaining < load_seconds


def choose_worker(workers: Sequence[WorkerView], key: str | None, now: float,
                  load_seconds: float | None) -> int | None:
    """The index of the worker to place a job for checkpoint `key` on now; None to wait for one (see the module
    doc). `workers`: those that may take the job (ready, and not lacking its files)."""
    idle = [worker for worker in workers if worker.pending == 0]
    if key is not None:
        for worker in idle:
            if worker.checkpoint == key:
                return worker.index
    if not idle:
        return None
    holder = next((worker for worker in workers if key is not None and worker.checkpoint == key
                   and worker.pending == 1), None)
    if holder is not None and wait_for_holder(remaining_seconds(holder, now), load_seconds):
        return holder.index
    for worker in idle:
        if worker.checkpoint is None:
            return worker.index
    return min(idle, key=lambda worker: worker.idle_since).index
