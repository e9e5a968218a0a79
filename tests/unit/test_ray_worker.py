"""A Ray worker's body (`RayWorker`) without Ray, on a fake generation stack: it tunes the allocator once at its
start and releases free memory once it has been idle after a job (`IdleTimer`)."""

from __future__ import annotations

import contextlib
import threading
import time
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

import modules.jobs.ray_worker as ray_worker
from modules.allocator import AllocatorState
from modules.cli import LaunchOptions
from modules.jobs.executor import GenerationWork
from modules.jobs.idle import IdleTimer
from modules.types import GenerationRequest


class FakeNetworks:
    @contextlib.contextmanager
    def substituted(self, loras: Any, embeddings: Any) -> Iterator[None]:
        yield


class Calls:
    def __init__(self) -> None:
        self.tuned = 0
        self.released = threading.Event()
        self.releases = 0

    def tune(self) -> AllocatorState:
        self.tuned += 1
        return AllocatorState(True, "glibc tuned")

    def release(self) -> None:
        self.releases += 1
        self.released.set()


@pytest.fixture()
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    recorded = Calls()
    monkeypatch.setattr(ray_worker, "tune_allocator", recorded.tune)
    monkeypatch.setattr(ray_worker, "release_free_memory", recorded.release)
    return recorded


def worker_with_fake_stack(idle_after: float) -> ray_worker.RayWorker:
    worker = ray_worker.RayWorker(0, LaunchOptions(), idle_after=idle_after)
    worker._stack = SimpleNamespace(networks=FakeNetworks(),  # type: ignore[assignment]
                                    generation=SimpleNamespace(run=lambda request, context, save: "done"))
    return worker


@pytest.mark.slow  # the worker's status imports ray (for its GPU ids) after the job
def test_the_worker_tunes_the_allocator_at_start_and_releases_memory_when_idle_after_a_job(calls: Calls) -> None:
    worker = worker_with_fake_stack(idle_after=0.01)
    assert calls.tuned == 1 and calls.releases == 0 and worker.allocator.reason == "glibc tuned"
    reply = worker.run("job-1", GenerationWork(GenerationRequest(prompt="x")))
    assert reply.error is None and reply.result == "done"
    assert calls.released.wait(5)
    assert calls.tuned == 1 and calls.releases == worker.memory_releases == 1


def test_the_idle_callback_waits_for_the_last_job_and_runs_once_per_idle_spell() -> None:
    fired: list[float] = []
    timer = IdleTimer(lambda: fired.append(time.monotonic()), after=0.01)
    timer.started()
    timer.started()
    timer.ended()
    time.sleep(0.05)
    assert not fired  # a job still runs
    timer.ended()
    deadline = time.monotonic() + 5
    while not fired and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert len(fired) == 1


def test_a_failing_idle_callback_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    done = threading.Event()

    def fail() -> None:
        done.set()
        raise RuntimeError("boom")

    timer = IdleTimer(fail, after=0.0, name="Ray worker-3")
    timer.started()
    timer.ended()
    assert done.wait(5)
    deadline = time.monotonic() + 5
    while "idle callback failed" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "Ray worker-3: idle callback failed" in caplog.text
