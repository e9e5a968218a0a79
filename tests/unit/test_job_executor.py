"""The executor seam of the job queue: only plain, picklable data crosses it, in both directions."""

from __future__ import annotations

import pickle
import threading
from typing import Any, Iterator

import pytest
from PIL import Image

from modules.errors import UserError
from modules.jobs import (
    Assignment,
    Control,
    GenerationWork,
    JobContext,
    JobQueue,
    JobSource,
    JobState,
    LocalThreadExecutor,
    NoGenerationRunner,
    Outcome,
    WorkerInfo,
)
from modules.types import GenerationRequest, GenerationResult, ProgressEvent

WAIT = 10.0


class RecordingExecutor:
    """An executor that runs nothing by itself: the test takes jobs and reports for it, as a remote worker would."""

    def __init__(self) -> None:
        self.source: JobSource | None = None
        self.controls: list[tuple[str, Control]] = []
        self.shut_down = False

    def start(self, source: JobSource) -> None:
        self.source = source

    def control(self, job_id: str, message: Control) -> None:
        self.controls.append((job_id, message))

    def shutdown(self, timeout: float | None) -> bool:
        self.shut_down = True
        return True

    def workers(self) -> list[WorkerInfo]:
        return [WorkerInfo("remote-0", "cuda", "idle")]

    def take(self) -> Assignment:
        assert self.source is not None
        assignment = self.source.take()
        assert assignment is not None
        return pickle.loads(pickle.dumps(assignment))  # what a worker elsewhere would receive


def _roundtrip(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value))


@pytest.fixture
def recorded() -> Iterator[tuple[JobQueue, RecordingExecutor]]:
    executor = RecordingExecutor()
    queue = JobQueue("seam", executor=executor)
    yield queue, executor
    queue.stop()


def test_the_executor_receives_the_request_as_data(recorded: tuple[JobQueue, RecordingExecutor]) -> None:
    queue, executor = recorded
    request = GenerationRequest(prompt="a lake", seed=3, init_image=Image.new("RGB", (4, 4)))
    job = queue.submit(GenerationWork(request, save=False), owner="ann")
    assignment = executor.take()
    assert assignment.job_id == job.id and job.state is JobState.RUNNING and queue.current() is job
    assert isinstance(assignment.work, GenerationWork) and assignment.work.save is False
    assert assignment.work.request.prompt == "a lake" and assignment.work.request.init_image.size == (4, 4)


def test_interrupt_and_skip_reach_the_executor_as_control_data(recorded: tuple[JobQueue,
                                                                               RecordingExecutor]) -> None:
    queue, executor = recorded
    job = queue.submit(GenerationWork(GenerationRequest()), owner="ann")
    queued = queue.submit(GenerationWork(GenerationRequest()))
    executor.take()
    assert queue.skip(job.id, owner="ann") and queue.interrupt_current(owner="ann")
    assert not queue.skip(queued.id)  # not running: nothing to send
    assert executor.controls == [(job.id, Control.SKIP), (job.id, Control.INTERRUPT)]
    assert _roundtrip(executor.controls) == executor.controls
    assert job.cancel_token.skipped and job.cancel_token.interrupted  # the queue's record of what was asked


def test_progress_and_result_from_the_executor_reach_subscribers(recorded: tuple[JobQueue,
                                                                                 RecordingExecutor]) -> None:
    queue, executor = recorded
    job = queue.submit(GenerationWork(GenerationRequest()))
    with queue.subscribe(job.id) as subscription:
        assignment = executor.take()
        assert executor.source is not None
        preview = Image.new("RGB", (8, 8), (1, 2, 3))
        executor.source.progress(assignment.job_id, _roundtrip(ProgressEvent(2, 4, preview=preview, textinfo="x")))
        executor.source.finish(assignment.job_id, _roundtrip(Outcome(result="pictures")))
        events = list(subscription)
    assert [event.kind for event in events] == ["started", "progress", "finished"]
    progress = events[1].progress
    assert (progress.step, progress.total_steps, progress.textinfo) == (2, 4, "x")
    assert events[1].preview is not None and events[1].preview.getpixel((0, 0)) == (1, 2, 3)
    assert job.outcome(0) == "pictures" and job.state is JobState.DONE


def test_an_error_crosses_as_data(recorded: tuple[JobQueue, RecordingExecutor]) -> None:
    queue, executor = recorded
    failed, interrupted = (queue.submit(GenerationWork(GenerationRequest())) for _ in range(2))
    assert executor.source is not None
    executor.source.finish(executor.take().job_id, _roundtrip(Outcome(error=UserError("The image is missing."))))
    executor.source.finish(executor.take().job_id, Outcome(error=RuntimeError("stopped"), interrupted=True))
    assert failed.state is JobState.FAILED and failed.error_message == "The image is missing."
    with pytest.raises(UserError, match="missing"):
        failed.outcome(0)
    assert interrupted.state is JobState.INTERRUPTED and interrupted.error_message == "interrupted"


def test_stop_interrupts_the_running_job_and_shuts_the_executor_down(recorded: tuple[JobQueue,
                                                                                     RecordingExecutor]) -> None:
    queue, executor = recorded
    running = queue.submit(GenerationWork(GenerationRequest()))
    queued = queue.submit(GenerationWork(GenerationRequest()))
    executor.take()
    assert queue.stop() and executor.shut_down
    assert executor.controls == [(running.id, Control.INTERRUPT)] and queued.state is JobState.CANCELLED
    assert executor.source is not None and executor.source.take() is None


def test_a_job_that_lost_its_worker_goes_back_once_to_the_front_of_its_users_jobs(
        recorded: tuple[JobQueue, RecordingExecutor]) -> None:
    queue, executor = recorded
    source = executor.source
    assert source is not None
    lost, ann_next = (queue.submit(GenerationWork(GenerationRequest(seed=seed)), owner="ann") for seed in (1, 2))
    bob = queue.submit(GenerationWork(GenerationRequest(seed=3)), owner="bob")
    assert executor.take().job_id == lost.id
    source.placed(lost.id, "remote-0")
    source.progress(lost.id, ProgressEvent(3, 4))
    assert lost.worker == "remote-0" and queue.workers() == [WorkerInfo("remote-0", "cuda", "idle")]
    with queue.subscribe(lost.id) as subscription:
        assert source.requeue(lost.id, "worker remote-0 was lost; queued again")
        event = subscription.get(timeout=WAIT)
    assert event is not None and (event.kind, event.state) == ("queued", JobState.QUEUED)
    assert lost.state is JobState.QUEUED and lost.worker is None and lost.started is None
    assert lost.progress.step == 0
    # bob was served least recently, then ann's lost job before her next one
    assert queue.waiting() == [bob, lost, ann_next] and lost.position == 2
    assert executor.take().job_id == bob.id
    assert executor.take().job_id == lost.id and lost.state is JobState.RUNNING
    assert not source.requeue(lost.id, "lost again")  # once only: the executor fails it
    result = GenerationResult((), (), (), (), (), (), GenerationRequest(), comments=("from the run",))
    source.finish(lost.id, _roundtrip(Outcome(result=result)))
    assert lost.outcome(0).comments == ("from the run", "worker remote-0 was lost; queued again")
    assert lost.notes == ("worker remote-0 was lost; queued again",)


def test_an_interrupted_or_finished_job_does_not_go_back(recorded: tuple[JobQueue, RecordingExecutor]) -> None:
    queue, executor = recorded
    source = executor.source
    assert source is not None
    job = queue.submit(GenerationWork(GenerationRequest()))
    executor.take()
    assert queue.cancel(job.id)  # running: interrupted
    assert not source.requeue(job.id, "lost")
    source.finish(job.id, Outcome(error=RuntimeError("gone"), interrupted=True))
    assert job.state is JobState.INTERRUPTED and not source.requeue(job.id, "lost")
    assert queue.pending_count() == 0


class FakeRunner:
    """A `GenerationRunner` that records what it ran and waits for a release (to observe control messages)."""

    def __init__(self) -> None:
        self.calls: list[tuple[GenerationRequest, bool | None]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def run(self, request: GenerationRequest, ctx: JobContext, *, save: bool | None = None) -> GenerationResult:
        self.calls.append((request, save))
        ctx.report(ProgressEvent(1, 1))
        self.started.set()
        assert self.release.wait(WAIT)
        return GenerationResult((), (), (), (), (), (), request, interrupted=ctx.cancel.interrupted)


def test_local_executor_runs_generation_work_through_its_runner() -> None:
    runner = FakeRunner()
    queue = JobQueue("local", executor=LocalThreadExecutor(runner))
    try:
        request = GenerationRequest(prompt="p")
        job = queue.submit(GenerationWork(request, save=True))
        assert runner.started.wait(WAIT) and job.progress.step == 1
        assert queue.interrupt_current()
        runner.release.set()
        result = job.outcome(WAIT)
        assert runner.calls == [(request, True)] and result.interrupted and job.state is JobState.INTERRUPTED
    finally:
        queue.stop()


def test_generation_work_needs_a_runner() -> None:
    queue = JobQueue("plain")
    try:
        job = queue.submit(GenerationWork(GenerationRequest()))
        with pytest.raises(NoGenerationRunner):
            job.outcome(WAIT)
    finally:
        queue.stop()


def test_the_idle_callback_runs_once_the_queue_has_been_idle() -> None:
    idle = threading.Event()
    calls: list[bool] = []
    runner = FakeRunner()

    def on_idle() -> None:
        calls.append(runner.release.is_set())
        idle.set()

    queue = JobQueue("idle", executor=LocalThreadExecutor(runner, on_idle=on_idle, idle_after=0.05))
    try:
        first = queue.submit(GenerationWork(GenerationRequest(prompt="p")))
        assert runner.started.wait(WAIT)
        assert not idle.wait(0.2)  # never while a job runs
        runner.release.set()
        first.outcome(WAIT)
        assert idle.wait(WAIT) and calls == [True]
    finally:
        queue.stop()

