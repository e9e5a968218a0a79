"""Job queue: FIFO order, positions, cancel/interrupt/skip, progress events, failures, owners, shutdown."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from typing import Any, Callable, Iterator

import pytest
from PIL import Image

from modules.errors import InvalidRequest, UserError
from modules.jobs import Job, JobCancelled, JobContext, JobQueue, JobState, QueueStopped, UnknownJob, _fraction
from modules.types import ProgressEvent

WAIT = 10.0  # generous upper bound for thread hand-offs; tests never assert durations


@pytest.fixture
def queue() -> Iterator[JobQueue]:
    q = JobQueue("test")
    yield q
    q.stop()


class Gate:
    """A job that signals when it starts and runs until released (keeps the worker busy deterministically)."""

    def __init__(self, result: Any = "gate") -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.result = result
        self.context: JobContext | None = None

    def __call__(self, ctx: JobContext) -> Any:
        self.context = ctx
        self.started.set()
        assert self.release.wait(WAIT)
        return self.result


def _running_gate(queue: JobQueue, **kwargs: Any) -> tuple[Job, Gate]:
    gate = Gate()
    job = queue.submit(gate, **kwargs)
    assert gate.started.wait(WAIT)
    return job, gate


def _returning(value: Any, log: list[Any] | None = None) -> Callable[[JobContext], Any]:
    def work(ctx: JobContext) -> Any:
        if log is not None:
            log.append(value)
        return value
    return work


def test_jobs_run_in_submission_order(queue: JobQueue) -> None:
    order: list[int] = []
    first, gate = _running_gate(queue)
    jobs = [queue.submit(_returning(i, order)) for i in range(5)]
    gate.release.set()
    assert [job.outcome(WAIT) for job in jobs] == list(range(5))
    assert order == list(range(5)) and first.state is JobState.DONE


def test_positions_current_and_list(queue: JobQueue) -> None:
    running, gate = _running_gate(queue, description="first")
    queued = [queue.submit(_returning(i)) for i in range(3)]
    assert queue.current() is running and running.state is JobState.RUNNING and running.position is None
    assert [job.position for job in queued] == [1, 2, 3] and queue.pending_count() == 3
    assert queue.cancel(queued[0].id)
    assert [job.position for job in queued[1:]] == [1, 2]
    assert [job.id for job in queue.list()] == [running.id, *(job.id for job in queued)]
    gate.release.set()
    assert queued[-1].wait(WAIT) and queue.current() is None and queued[-1].position is None


def test_cancel_queued_job_never_runs(queue: JobQueue) -> None:
    ran: list[str] = []
    _, gate = _running_gate(queue)
    victim = queue.submit(_returning("victim", ran), description="victim")
    after = queue.submit(_returning("after", ran))
    assert queue.cancel(victim.id)
    gate.release.set()
    assert after.outcome(WAIT) == "after" and ran == ["after"]
    assert victim.state is JobState.CANCELLED and victim.wait(0)
    with pytest.raises(JobCancelled, match="victim"):
        victim.outcome()
    assert not queue.cancel(victim.id)  # already finished


def test_cancel_running_job_interrupts_and_keeps_its_result(queue: JobQueue) -> None:
    def work(ctx: JobContext) -> list[int]:
        done = []
        for step in range(1000):
            if ctx.cancel.interrupted:
                break
            done.append(step)
            if step == 2:
                started.set()
                assert interrupted.wait(WAIT)
        return done

    started, interrupted = threading.Event(), threading.Event()
    job = queue.submit(work)
    assert started.wait(WAIT)
    assert queue.cancel(job.id)
    interrupted.set()
    assert job.outcome(WAIT) == [0, 1, 2] and job.state is JobState.INTERRUPTED


def test_interrupt_and_skip_flags_reach_the_running_job(queue: JobQueue) -> None:
    job, gate = _running_gate(queue)
    assert gate.context is not None
    token = gate.context.cancel
    assert not token.skipped and not token.interrupted
    assert queue.skip_current()
    assert token.skipped and not token.interrupted
    assert queue.interrupt_current()
    assert token.interrupted
    gate.release.set()
    assert job.outcome(WAIT) == "gate" and job.state is JobState.INTERRUPTED
    assert not queue.interrupt_current() and not queue.skip_current()


def test_skip_alone_finishes_as_done(queue: JobQueue) -> None:
    job, gate = _running_gate(queue)
    queue.skip_current()
    gate.release.set()
    assert job.wait(WAIT) and job.state is JobState.DONE


def test_subscriber_sees_progress_and_previews(queue: JobQueue) -> None:
    preview = Image.new("RGB", (8, 8))
    release = threading.Event()

    def work(ctx: JobContext) -> str:
        assert release.wait(WAIT)
        for step in (1, 2, 3):
            ctx.report(ProgressEvent(step=step, total_steps=3, preview=preview if step == 2 else None,
                                     textinfo=f"step {step}"))
        return "ok"

    job = queue.submit(work)
    with queue.subscribe(job.id) as subscription:
        release.set()
        events = list(subscription)
    kinds = [event.kind for event in events]
    assert kinds[-4:] == ["progress", "progress", "progress", "finished"] and kinds.count("finished") == 1
    progress = [event for event in events if event.kind == "progress"]
    assert [event.progress.step for event in progress] == [1, 2, 3]
    assert [event.preview is not None for event in progress] == [False, True, False]
    assert [event.preview_id for event in progress] == [0, 1, 1]
    assert events[-1].state is JobState.DONE and events[-1].progress.fraction == 1.0
    assert job.preview is preview and job.textinfo == "step 3" and subscription.closed


def test_subscribing_to_a_finished_job_delivers_its_end(queue: JobQueue) -> None:
    job = queue.submit(_returning(1))
    job.wait(WAIT)
    events = list(queue.subscribe(job.id))
    assert [(event.kind, event.state) for event in events] == [("finished", JobState.DONE)]


def test_queue_wide_subscription_sees_every_job(queue: JobQueue) -> None:
    subscription = queue.subscribe()
    jobs = [queue.submit(_returning(i)) for i in range(3)]
    jobs[-1].wait(WAIT)
    finished = []
    while len(finished) < 3:
        event = subscription.get(WAIT)
        assert event is not None
        if event.kind == "finished":
            finished.append(event.job_id)
    assert finished == [job.id for job in jobs]
    subscription.close()
    assert subscription.get(0) is None


def test_async_iteration_for_sse(queue: JobQueue) -> None:
    gate = Gate()

    def work(ctx: JobContext) -> str:
        assert gate.release.wait(WAIT)
        ctx.report(ProgressEvent(step=1, total_steps=1))
        return "async"

    job = queue.submit(work)

    async def collect() -> list[str]:
        subscription = queue.subscribe(job.id)
        asyncio.get_running_loop().call_soon(gate.release.set)
        return [event.kind async for event in subscription]

    kinds = asyncio.run(collect())
    assert kinds[-2:] == ["progress", "finished"]
    assert asyncio.run(job.wait_async(WAIT))


def test_failures_are_isolated(queue: JobQueue, caplog: pytest.LogCaptureFixture) -> None:
    def user_error(ctx: JobContext) -> None:
        raise UserError("The init image is missing.")

    def crash(ctx: JobContext) -> None:
        raise ZeroDivisionError("division by zero")

    bad_input, broken, good = queue.submit(user_error), queue.submit(crash), queue.submit(_returning("fine"))
    assert good.outcome(WAIT) == "fine"
    assert bad_input.state is JobState.FAILED and bad_input.error_message == "The init image is missing."
    assert broken.state is JobState.FAILED
    assert broken.error_message == "internal error: ZeroDivisionError: division by zero"
    assert isinstance(broken.error, ZeroDivisionError) and "Traceback" in caplog.text
    with pytest.raises(ZeroDivisionError):
        broken.outcome()


def test_a_failed_job_keeps_its_error_but_not_the_frames_it_failed_in(queue: JobQueue) -> None:
    """The error is kept for the API and UI; its traceback (and its cause's) is dropped once logged, so what the
    job's frames held (latents, activations) is freed. (A user error: pytest's log capture would keep a logged
    traceback alive.)"""
    held: list[weakref.ref] = []

    class Big:
        pass

    def crash(ctx: JobContext) -> None:
        scratch = Big()
        held.append(weakref.ref(scratch))
        try:
            raise KeyError("inner")
        except KeyError as error:
            raise UserError("outer") from error

    job = queue.submit(crash)
    assert job.wait(WAIT) and job.state is JobState.FAILED
    assert isinstance(job.error, UserError) and job.error.__traceback__ is None
    assert job.error.__cause__ is not None and job.error.__cause__.__traceback__ is None
    gc.collect()
    assert held[0]() is None


def test_an_error_after_interrupt_counts_as_interrupted(queue: JobQueue) -> None:
    gate = Gate()

    def fails_once_interrupted(ctx: JobContext) -> None:
        gate(ctx)
        raise RuntimeError("stopped mid-step")

    job = queue.submit(fails_once_interrupted)
    assert gate.started.wait(WAIT)
    queue.interrupt_current()
    other = queue.submit(fails_once_interrupted)
    gate.release.set()
    assert job.wait(WAIT) and job.state is JobState.INTERRUPTED and job.error_message == "interrupted"
    assert other.wait(WAIT) and other.state is JobState.FAILED  # the next job has its own token
    assert other.error_message == "internal error: RuntimeError: stopped mid-step"


def test_eight_concurrent_submitters_get_their_own_results(queue: JobQueue) -> None:
    results: dict[int, list[Any]] = {}
    barrier = threading.Barrier(8)

    def client(n: int) -> None:
        barrier.wait(WAIT)
        jobs = [queue.submit(_returning((n, i)), owner=f"user{n}") for i in range(5)]
        results[n] = [job.outcome(WAIT) for job in jobs]

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert results == {n: [(n, i) for i in range(5)] for n in range(8)}
    assert len({job.id for job in queue.list()}) == 40


def test_owner_filtering(queue: JobQueue) -> None:
    mine, gate = _running_gate(queue, owner="alice")
    theirs = queue.submit(_returning(1), owner="bob")
    assert queue.list(owner="alice") == [mine] and queue.list(owner="bob") == [theirs]
    assert len(queue.list()) == 2
    assert queue.get(theirs.id, owner="bob") is theirs
    with pytest.raises(UnknownJob):
        queue.get(theirs.id, owner="alice")
    with pytest.raises(UnknownJob):
        queue.cancel(theirs.id, owner="alice")
    with pytest.raises(UnknownJob):
        queue.subscribe(theirs.id, owner="alice")
    assert not queue.interrupt_current(owner="bob") and not queue.skip_current(owner="bob")
    assert gate.context is not None and not gate.context.cancel.interrupted
    gate.release.set()


def test_task_ids(queue: JobQueue) -> None:
    job = queue.submit(_returning(1), task_id="task(abc)")
    assert job.id == "task(abc)" and queue.get("task(abc)") is job
    with pytest.raises(InvalidRequest, match="already in use"):
        queue.submit(_returning(2), task_id="task(abc)")
    generated = queue.submit(_returning(3))
    assert len(generated.id) == 32 and int(generated.id, 16) >= 0
    with pytest.raises(UnknownJob):
        queue.get("missing")


def test_history_is_bounded() -> None:
    queue = JobQueue("small", history=3)
    try:
        jobs = [queue.submit(_returning(i)) for i in range(5)]
        jobs[-1].wait(WAIT)
        assert [job.id for job in queue.list()] == [job.id for job in jobs[2:]]
        with pytest.raises(UnknownJob):
            queue.get(jobs[0].id)
        assert jobs[0].outcome() == 0  # a caller holding the Job object still has its result
    finally:
        queue.stop()


def test_eta_from_measured_step_rate() -> None:
    now = [100.0]
    queue = JobQueue("eta", clock=lambda: now[0])
    checked = threading.Event()
    try:
        def work(ctx: JobContext) -> None:
            ctx.report(ProgressEvent(step=1, total_steps=10))  # origin: model loading before it is not counted
            assert job.progress.eta is None
            now[0] += 2.0
            ctx.report(ProgressEvent(step=2, total_steps=10))  # 0.1 of the job in 2 s -> 16 s for the last 0.8
            assert job.progress.eta == pytest.approx(16.0) and job.progress.fraction == pytest.approx(0.2)
            now[0] += 4.0
            assert job.progress.eta == pytest.approx(12.0)  # counts down between reports
            checked.set()

        job = queue.submit(work)
        job.outcome(WAIT)
        assert checked.is_set() and job.progress.eta == 0.0
    finally:
        queue.stop()


@pytest.mark.parametrize("event, expected", [
    (ProgressEvent(step=5, total_steps=10, job_no=1, job_count=2), 0.75),
    (ProgressEvent(step=0, total_steps=0, job_no=1, job_count=4), 0.25),
    (ProgressEvent(step=20, total_steps=10, job_no=3, job_count=4), 1.0),
    (ProgressEvent(step=1, total_steps=1, job_no=0, job_count=0), 0.0),
])
def test_fraction_matches_a1111(event: ProgressEvent, expected: float) -> None:
    assert _fraction(event) == pytest.approx(expected)


def test_stop_cancels_queued_interrupts_running_and_ends_streams() -> None:
    queue = JobQueue("stopping")

    def cooperative(ctx: JobContext) -> str:
        started.set()
        while not ctx.cancel.interrupted:
            threading.Event().wait(0.01)  # a denoise loop checking its token between steps
        return "partial"

    started = threading.Event()
    running = queue.submit(cooperative)
    assert started.wait(WAIT)
    queued = queue.submit(_returning(1))
    subscription = queue.subscribe()
    assert queue.stop()
    assert running.state is JobState.INTERRUPTED and running.outcome() == "partial"
    assert queued.state is JobState.CANCELLED
    assert subscription.closed and list(subscription)[-1].kind == "finished"
    with pytest.raises(QueueStopped):
        queue.submit(_returning(2))
    assert queue.stop()  # idempotent
