"""Which Ray worker gets a job (`modules.jobs.routing`), and the dispatcher's placement over fake workers: the busy
holder of a checkpoint, and a worker restarting after a loss (no Ray needed)."""

from __future__ import annotations

import threading
from typing import Any

from modules.cli import LaunchOptions
from modules.jobs.executor import Assignment, GenerationWork
from modules.jobs.ray_executor import RayExecutor, _Slot
from modules.jobs.routing import WorkerView, choose_worker, progress_fraction, remaining_seconds, wait_for_holder
from modules.types import GenerationRequest, ProgressEvent

NOW = 1000.0


def view(index: int, checkpoint: str | None = None, pending: int = 0, idle_since: float = 0.0,
         started: float | None = None, fraction: float = 0.0) -> WorkerView:
    return WorkerView(index, checkpoint, pending, idle_since, started, fraction)


def test_progress_and_remaining_time() -> None:
    assert progress_fraction(ProgressEvent(step=5, total_steps=20, job_no=1, job_count=2)) == 0.625
    assert remaining_seconds(view(0, started=NOW - 6.0, fraction=0.75), NOW) == 2.0
    assert remaining_seconds(view(0, started=NOW - 9.0), NOW) is None  # no progress yet: unknown
    assert remaining_seconds(view(0), NOW) is None
    assert wait_for_holder(1.0, 5.0) and not wait_for_holder(6.0, 5.0)
    assert not wait_for_holder(None, 5.0) and not wait_for_holder(1.0, None)


def test_an_idle_holder_then_a_busy_holder_about_to_finish_then_a_fresh_worker_then_the_longest_idle() -> None:
    about_to_finish = view(0, "a", pending=1, started=NOW - 9.0, fraction=0.9)  # ~1 s left
    fresh, used = view(1), view(2, "b", idle_since=NOW - 50)
    assert choose_worker([about_to_finish, fresh, view(3, "a", idle_since=NOW)], "a", NOW, 5.0) == 3
    assert choose_worker([about_to_finish, fresh, used], "a", NOW, 5.0) == 0  # 1 s left < 5 s to load
    assert choose_worker([about_to_finish, fresh, used], "a", NOW, 0.5) == 1  # loading is quicker
    assert choose_worker([about_to_finish, fresh, used], "a", NOW, None) == 1  # never measured: no waiting
    just_started = view(0, "a", pending=1, started=NOW - 1.0, fraction=0.01)
    assert choose_worker([just_started, used, view(3, "c", idle_since=NOW - 10)], "a", NOW, 5.0) == 2
    queued_behind = view(0, "a", pending=2, started=NOW - 9.0, fraction=0.9)  # a job already waits for it
    assert choose_worker([queued_behind, fresh], "a", NOW, 5.0) == 1
    assert choose_worker([about_to_finish], "a", NOW, 5.0) is None  # no idle worker: wait for one


class Finished:
    """A `JobSource` stand-in that records what `_place` finishes."""

    def __init__(self) -> None:
        self.finished: list[Any] = []

    def finish(self, job_id: str, outcome: Any) -> None:
        self.finished.append((job_id, outcome))


def executor_with(*slots: _Slot) -> RayExecutor:
    executor = RayExecutor(LaunchOptions(), workers=len(slots))
    executor._slots = list(slots)
    return executor


def slot(index: int, *, ready: bool = True, pending: int = 0, checkpoint: str | None = None) -> _Slot:
    made = _Slot(index, actor=None)
    made.ready, made.pending, made.checkpoint = ready, pending, checkpoint
    return made


JOB = Assignment("job-1", GenerationWork(GenerationRequest(prompt="x")))


def test_a_busy_holder_about_to_finish_gets_the_job_queued_behind_its_current_one() -> None:
    holder, idle = slot(0, pending=1, checkpoint="a"), slot(1)
    executor = executor_with(holder, idle)
    holder.started, holder.fraction = NOW - 9.0, 0.9
    executor._load_seconds["a"] = 1e9  # loading takes longer than anything left
    executor._place(JOB, None, "a", Finished())  # type: ignore[arg-type]
    assert holder.pending == 2 and holder.inbox.get_nowait()[0] is JOB and idle.inbox.empty()


def test_a_restarting_worker_gets_no_job_until_it_answers_its_ready_check() -> None:
    restarting, busy = slot(0, ready=False), slot(1, pending=1)
    executor = executor_with(restarting, busy)
    placing = threading.Thread(target=executor._place, args=(JOB, None, None, Finished()), daemon=True)
    placing.start()
    placing.join(0.2)
    assert placing.is_alive() and restarting.inbox.empty() and busy.inbox.empty()  # waits: none may take it
    with executor._cond:  # the busy worker ends its job first: it gets the job, not the restarting one
        busy.pending = 0
        executor._cond.notify_all()
    placing.join(5)
    assert not placing.is_alive() and busy.inbox.get_nowait()[0] is JOB and restarting.inbox.empty()
    assert executor.workers()[0].state == "starting"


def test_a_job_fails_when_every_worker_stopped_for_good() -> None:
    gone = slot(0)
    gone.dead = True
    source = Finished()
    executor_with(gone)._place(JOB, None, None, source)  # type: ignore[arg-type]
    [(job_id, outcome)] = source.finished
    assert job_id == "job-1" and outcome.error.http_status == 503
    assert str(outcome.error) == ("Every worker process has stopped for good (Ray gave up restarting them); restart "
                                  "the server.")
