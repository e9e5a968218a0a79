"""`RayExecutor` on a local Ray cluster (2 CPUs) with two workers and a tiny SD1 checkpoint: the same pixels as the
local executor, two jobs at once, interrupt to the right worker, a killed worker fails its job and the next job runs.
Skipped where Ray is not installed (`pip install -r requirements-ray.txt`)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from modules.app import App
from modules.bootstrap import build_app
from modules.cli import LaunchOptions, parse_args
from modules.jobs import Job, JobState
from modules.types import GenerationRequest
from tests.core.helpers import write_tiny_checkpoint

pytestmark = pytest.mark.slow
NO_RAY = "Ray is not installed: pip install -r requirements-ray.txt"

SMALL = GenerationRequest(prompt="a red cube", seed=11, steps=3, width=64, height=64, sampler="Euler",
                          cfg_scale=5.0)
LONG_STEPS = 400  # long enough to interrupt or kill a job on a tiny model


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    if importlib.util.find_spec("ray") is None:
        pytest.skip(NO_RAY)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 1024 * 1024)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_app(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    data = tmp_path_factory.mktemp("ray_app")
    write_tiny_checkpoint(data)
    app = build_app(LaunchOptions(data_dir=data, workers=2))
    try:
        yield app
    finally:
        app.close()


def executor(app: App) -> Any:
    return app.jobs._executor


def wait_for(condition: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def running_with_progress(job: Job) -> bool:
    assert not job.state.finished, job.error_message
    return job.state is JobState.RUNNING and job.progress.step >= 1


def test_flags_choose_the_ray_executor() -> None:
    assert parse_args(["--workers", "auto"]).workers == "auto"
    assert parse_args(["--workers", "3", "--ray-address", "ray://head:10001"]).ray_address == "ray://head:10001"
    assert not parse_args([]).ray_enabled and parse_args(["--ray-address", "auto"]).ray_enabled
    with pytest.raises(SystemExit):
        parse_args(["--workers", "0"])


def test_same_request_gives_the_same_pixels_as_the_local_executor(ray_app: App, tmp_path: Path) -> None:
    import torch

    folder = tmp_path / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    shutil.copy2(ray_app.paths.checkpoints / "tiny.safetensors", folder)  # the same file: the same hash
    local = build_app(LaunchOptions(data_dir=tmp_path))
    threads = torch.get_num_threads()
    # on CPU the last bit depends on the intra-op thread count (1 of 12288 values differs by one level between 2
    # threads and 1); a Ray worker with num_cpus=1 runs torch on one thread (Ray sets OMP_NUM_THREADS)
    torch.set_num_threads(1)
    try:
        expected = local.submit(SMALL, save=False).outcome(timeout=300)
    finally:
        torch.set_num_threads(threads)
        local.close()
    job = ray_app.submit(SMALL, save=False)
    result = job.outcome(timeout=300)
    assert [image.tobytes() for image in result.images] == [image.tobytes() for image in expected.images]
    assert result.infotexts == expected.infotexts
    assert job.id in {run.job_id for run in executor(ray_app).runs}


def test_two_workers_run_two_jobs_at_once(ray_app: App) -> None:
    request = SMALL.with_changes(steps=40)
    jobs = [ray_app.submit(request.with_changes(seed=seed), save=False) for seed in (1, 2)]
    for job in jobs:
        job.outcome(timeout=300)
    runs = {run.job_id: run for run in executor(ray_app).runs}
    first, second = (runs[job.id] for job in jobs)
    assert first.worker != second.worker and first.pid != second.pid
    assert max(first.started, second.started) < min(first.finished, second.finished), (first, second)


def test_interrupt_reaches_the_worker_running_the_job(ray_app: App) -> None:
    request = SMALL.with_changes(steps=LONG_STEPS)
    stopped, other = (ray_app.submit(request.with_changes(seed=seed), save=False) for seed in (3, 4))
    wait_for(lambda: running_with_progress(stopped) and running_with_progress(other))
    workers = executor(ray_app).worker_of(stopped.id), executor(ray_app).worker_of(other.id)
    assert None not in workers and workers[0] != workers[1]
    assert ray_app.jobs.cancel(stopped.id)
    assert stopped.wait(60) and stopped.state is JobState.INTERRUPTED
    assert not other.state.finished  # the other worker's job goes on
    assert other.wait(600) and other.state is JobState.DONE, other.error_message
    assert not other.result.interrupted and other.progress.fraction == 1.0


def test_a_killed_worker_fails_its_job_and_the_next_jobs_run(ray_app: App) -> None:
    doomed = ray_app.submit(SMALL.with_changes(steps=LONG_STEPS, seed=5), save=False)
    wait_for(lambda: running_with_progress(doomed))
    ray_executor = executor(ray_app)
    index = ray_executor.worker_of(doomed.id)
    pid = ray_executor.worker_pid(index)
    os.kill(pid, signal.SIGKILL)
    assert doomed.wait(120)
    assert doomed.state is JobState.FAILED
    assert f"worker {index}" in doomed.error_message and "stopped" in doomed.error_message
    after = [ray_app.submit(SMALL.with_changes(seed=seed), save=False) for seed in (6, 7)]
    for job in after:
        assert job.outcome(timeout=300).images
    assert ray_executor.worker_pid(index) != pid  # Ray restarted the worker
