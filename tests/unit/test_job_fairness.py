"""Fair order of the job queue: round-robin between groups (users), submission order within one, positions."""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

import pytest

from modules.jobs import Job, JobContext, JobQueue, JobState

WAIT = 10.0


@pytest.fixture
def queue() -> Iterator[JobQueue]:
    q = JobQueue("fair")
    yield q
    q.stop()


def _hold(queue: JobQueue, **kwargs: Any) -> tuple[Job, threading.Event]:
    """A running job (submitted with `kwargs`) that keeps the worker busy until the returned event is set."""
    started, release = threading.Event(), threading.Event()

    def work(ctx: JobContext) -> None:
        started.set()
        assert release.wait(WAIT)

    job = queue.submit(work, **kwargs)
    assert started.wait(WAIT)
    return job, release


def _logging(name: str, log: list[str]) -> Callable[[JobContext], str]:
    def work(ctx: JobContext) -> str:
        log.append(name)
        return name
    return work


def test_a_later_user_runs_after_the_first_job_of_a_long_batch(queue: JobQueue) -> None:
    log: list[str] = []
    first, release = _hold(queue, owner="A")
    batch = [queue.submit(_logging(f"A{n}", log), owner="A") for n in range(2, 11)]
    assert [job.position for job in batch] == list(range(1, 10))
    other = queue.submit(_logging("B1", log), owner="B")
    assert other.position == 1 and [job.position for job in batch] == list(range(2, 11))
    release.set()
    assert all(job.wait(WAIT) for job in [*batch, other])
    assert log == ["B1", *(f"A{n}" for n in range(2, 11))]
    assert first.state is JobState.DONE


def test_three_owners_interleave_and_keep_their_own_order(queue: JobQueue) -> None:
    log: list[str] = []
    _, release = _hold(queue, owner="system")
    jobs = [queue.submit(_logging(f"A{n}", log), owner="A") for n in range(1, 5)]
    jobs += [queue.submit(_logging(f"B{n}", log), owner="B") for n in range(1, 3)]
    jobs += [queue.submit(_logging(f"C{n}", log), owner="C") for n in range(1, 4)]
    expected = ["A1", "B1", "C1", "A2", "B2", "C2", "A3", "C3", "A4"]
    assert queue.pending_count() == 9
    by_name = dict(zip([f"A{n}" for n in range(1, 5)] + ["B1", "B2"] + [f"C{n}" for n in range(1, 4)], jobs))
    assert [by_name[name].position for name in expected] == list(range(1, 10))
    assert queue.waiting() == [by_name[name] for name in expected]
    assert queue.waiting(owner="C") == [by_name["C1"], by_name["C2"], by_name["C3"]]
    release.set()
    assert all(job.wait(WAIT) for job in jobs)
    assert log == expected


def test_a_group_served_recently_waits_behind_one_that_was_not(queue: JobQueue) -> None:
    log: list[str] = []
    _, release = _hold(queue, owner="A")
    a2 = queue.submit(_logging("A2", log), owner="A")
    b1 = queue.submit(_logging("B1", log), owner="B")
    assert (b1.position, a2.position) == (1, 2)
    release.set()
    assert a2.wait(WAIT) and b1.wait(WAIT)
    assert log == ["B1", "A2"]


def test_a_cancelled_job_leaves_the_rotation(queue: JobQueue) -> None:
    log: list[str] = []
    _, release = _hold(queue, owner="system")
    a1, a2 = (queue.submit(_logging(f"A{n}", log), owner="A") for n in (1, 2))
    b1 = queue.submit(_logging("B1", log), owner="B")
    c1, c2 = (queue.submit(_logging(f"C{n}", log), owner="C") for n in (1, 2))
    assert [job.position for job in (a1, b1, c1, a2, c2)] == [1, 2, 3, 4, 5]
    assert queue.cancel(b1.id, owner="B")
    assert b1.state is JobState.CANCELLED and b1.position is None
    assert [job.position for job in (a1, c1, a2, c2)] == [1, 2, 3, 4] and queue.pending_count() == 4
    assert queue.cancel(a1.id)  # A keeps its turn (it came first) with its next job
    assert [job.position for job in (a2, c1, c2)] == [1, 2, 3]
    release.set()
    assert all(job.wait(WAIT) for job in (a2, c1, c2))
    assert log == ["A2", "C1", "C2"]


def test_one_owner_is_first_come_first_served_and_group_overrides_owner(queue: JobQueue) -> None:
    log: list[str] = []
    _, release = _hold(queue)
    mine = [queue.submit(_logging(f"m{n}", log), owner="tab1", group="addr:1") for n in range(3)]
    same_person = queue.submit(_logging("t", log), owner="tab2", group="addr:1")
    other = queue.submit(_logging("o", log), owner="tab3", group="addr:2")
    assert [job.group for job in (mine[0], same_person, other)] == ["addr:1", "addr:1", "addr:2"]
    assert [job.position for job in (*mine, same_person, other)] == [1, 3, 4, 5, 2]
    assert queue.active_count() == 6 and queue.active_count(exclude_owner="tab1") == 3
    release.set()
    assert all(job.wait(WAIT) for job in (*mine, same_person, other))
    assert log == ["m0", "o", "m1", "m2", "t"]


def test_stop_cancels_every_waiting_job_of_every_group(queue: JobQueue) -> None:
    _, release = _hold(queue, owner="A")
    waiting = [queue.submit(_logging(name, []), owner=name[0]) for name in ("A2", "B1", "B2", "C1")]
    release.set()
    queue.stop()
    assert all(job.state in (JobState.CANCELLED, JobState.DONE) for job in waiting)
    assert queue.pending_count() == 0
