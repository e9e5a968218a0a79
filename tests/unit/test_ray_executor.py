"""`RayExecutor` on a local Ray cluster (2 CPUs) with two workers and tiny SD1 checkpoints: the same pixels as the
local executor, two jobs at once, interrupt and skip to the right worker, checkpoint affinity, checkpoints and LoRAs
found by sha256 in each worker's own data folder, a killed worker's job re-queued once, then failed.
Skipped where Ray is not installed (`pip install -r requirements-ray.txt`)."""

from __future__ import annotations

import dataclasses
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
from modules.models.convert import save_single_file
from modules.models.hashes import addnet_sha256, calculate_sha256
from modules.models.identity import Family, ModelIdentity
from modules.models.tiny import build_tiny_components
from modules.types import GenerationRequest
from tests.core.helpers import tiny, write_tiny_checkpoint
from tests.networks.app_data import LORA_TE, LORA_UNET
from tests.networks.helpers import kohya_state, write_lora

pytestmark = pytest.mark.slow
NO_RAY = "Ray is not installed: pip install -r requirements-ray.txt"

SMALL = GenerationRequest(prompt="a red cube", seed=11, steps=3, width=64, height=64, sampler="Euler",
                          cfg_scale=5.0, checkpoint="tiny.safetensors")
EVERYWHERE = ("tiny.safetensors", "alpha.safetensors", "beta.safetensors")  # in both workers' folders
GAMMA_ON_WORKER_1 = "elsewhere/gamma-copy.safetensors"  # gamma.safetensors, under another name, on worker 1 only
GRAIN_ON_WORKER_1 = "styles/film.safetensors"  # the LoRA grain.safetensors, under another name, on worker 1 only
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


def worker_folders(head: Path, root: Path) -> list[Path]:
    """Each worker's own data folder: the head's checkpoints in EVERYWHERE; worker 1 also has gamma and the LoRA
    grain under other names; only-head.safetensors (a checkpoint and a LoRA) is on no worker."""
    folders = [root / "worker-0", root / "worker-1"]
    for folder in folders:
        (folder / "models" / "Stable-diffusion").mkdir(parents=True)
        for name in EVERYWHERE:
            shutil.copy2(head / "models" / "Stable-diffusion" / name, folder / "models" / "Stable-diffusion" / name)
    target = folders[1] / "models" / "Stable-diffusion" / GAMMA_ON_WORKER_1
    target.parent.mkdir(parents=True)
    shutil.copy2(head / "models" / "Stable-diffusion" / "gamma.safetensors", target)
    (folders[1] / "models" / "Lora" / GRAIN_ON_WORKER_1).parent.mkdir(parents=True)
    shutil.copy2(head / "models" / "Lora" / "grain.safetensors", folders[1] / "models" / "Lora" / GRAIN_ON_WORKER_1)
    return folders


@pytest.fixture(scope="module")
def ray_app(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    data = tmp_path_factory.mktemp("ray_app")
    write_tiny_checkpoint(data)
    for seed, name in enumerate(("alpha", "beta", "gamma", "only-head"), start=1):
        save_single_file(build_tiny_components(ModelIdentity(Family.SD1), seed=seed),
                         data / "models" / "Stable-diffusion" / f"{name}.safetensors")
    sd1 = tiny(ModelIdentity(Family.SD1))
    for seed, name in ((1, "grain"), (2, "only-head")):
        write_lora(data / "models" / "Lora" / f"{name}.safetensors",
                   kohya_state(sd1, LORA_UNET, LORA_TE, rank=2, alpha=float(seed)))
    folders = worker_folders(data, tmp_path_factory.mktemp("ray_workers"))
    app = build_app(LaunchOptions(data_dir=data, workers=2),
                    worker_launch=lambda index, launch: dataclasses.replace(launch, data_dir=folders[index]))
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


def test_interrupt_reaches_the_worker_running_the_job_and_the_workers_are_listed(ray_app: App) -> None:
    request = SMALL.with_changes(steps=LONG_STEPS)
    stopped, other = (ray_app.submit(request.with_changes(seed=seed), save=False) for seed in (3, 4))
    wait_for(lambda: running_with_progress(stopped) and running_with_progress(other))
    workers = executor(ray_app).worker_of(stopped.id), executor(ray_app).worker_of(other.id)
    assert None not in workers and workers[0] != workers[1]
    assert (stopped.worker, other.worker) == tuple(f"worker-{index}" for index in workers)
    listed = {info.name: info for info in ray_app.jobs.workers()}
    assert [listed[job.worker].job_id for job in (stopped, other) if job.worker] == [stopped.id, other.id]
    assert all(info.state == "busy" and info.pid and info.device.startswith("cpu") for info in listed.values())
    assert ray_app.jobs.cancel(stopped.id)
    assert stopped.wait(60) and stopped.state is JobState.INTERRUPTED
    assert not other.state.finished  # the other worker's job goes on
    assert other.wait(600) and other.state is JobState.DONE, other.error_message
    assert not other.result.interrupted and other.progress.fraction == 1.0
    wait_for(lambda: all(info.state == "idle" for info in ray_app.jobs.workers()))
    assert all(info.checkpoints == (title(ray_app, "tiny.safetensors"),) and info.job_id is None
               for info in ray_app.jobs.workers())


def title(app: App, name: str) -> str:
    return app.models.catalog.find(name).title


def batch_steps(events: list[Any], batch: int) -> int:
    """The last denoising step a job reported in batch `batch`."""
    return max((event.progress.step for event in events if event.kind == "progress"
                and event.progress.job_no == batch), default=0)


def test_skip_reaches_the_worker_running_the_job(ray_app: App) -> None:
    request = SMALL.with_changes(steps=120, n_iter=2)
    skipped, other = (ray_app.submit(request.with_changes(seed=seed), save=False) for seed in (21, 22))
    with ray_app.jobs.subscribe(skipped.id, maxlen=4096) as skipped_events, \
            ray_app.jobs.subscribe(other.id, maxlen=4096) as other_events:
        wait_for(lambda: running_with_progress(skipped) and running_with_progress(other))
        assert skipped.worker != other.worker
        assert ray_app.jobs.skip(skipped.id)
        for job in (skipped, other):
            assert job.wait(300) and job.state is JobState.DONE, job.error_message
        events = list(skipped_events), list(other_events)
    assert batch_steps(events[0], 0) < batch_steps(events[1], 0) - 10  # batch 1 of the skipped job ended early
    assert batch_steps(events[0], 1) == batch_steps(events[1], 1) > 0  # its batch 2 ran in full, as the other's
    assert len(skipped.result.images) == len(other.result.images) == 2


def test_affinity_keeps_each_checkpoint_on_the_worker_that_has_it(ray_app: App) -> None:
    jobs = []
    for seed, name in enumerate(("alpha.safetensors", "beta.safetensors") * 2):
        job = ray_app.submit(SMALL.with_changes(checkpoint=name, seed=seed), save=False)
        job.outcome(timeout=300)  # one at a time: both workers are idle at each placement
        jobs.append(job)
    workers = [job.worker for job in jobs]
    assert workers[0] == workers[2] and workers[1] == workers[3] and workers[0] != workers[1], workers
    loaded = executor(ray_app).loaded()  # one checkpoint each (sd_checkpoints_limit 1): no switch after the first
    assert loaded[int(workers[0][-1])] == [title(ray_app, "alpha.safetensors")]
    assert loaded[int(workers[1][-1])] == [title(ray_app, "beta.safetensors")]


def test_a_worker_finds_the_checkpoint_by_sha256_and_one_without_it_hands_the_job_on(ray_app: App) -> None:
    sha256 = calculate_sha256(ray_app.paths.checkpoints / "gamma.safetensors")
    jobs = [ray_app.submit(SMALL.with_changes(checkpoint="gamma", seed=seed), save=False) for seed in (31, 32)]
    for job in jobs:  # both workers were idle: one job went to worker-0 first, which lacks gamma
        assert job.outcome(timeout=300).images
        assert job.worker == "worker-1" and f"Model hash: {sha256[:10]}" in job.result.infotexts[0]
    runs = {run.job_id: run.worker for run in executor(ray_app).runs}
    assert [runs[job.id] for job in jobs] == [1, 1]


def test_a_checkpoint_no_worker_has_fails_the_job_naming_it(ray_app: App) -> None:
    job = ray_app.submit(SMALL.with_changes(checkpoint="only-head"), save=False)
    assert job.wait(300) and job.state is JobState.FAILED
    assert job.error_message is not None and "No worker has the checkpoint only-head.safetensors" in job.error_message
    after = ray_app.submit(SMALL.with_changes(seed=33), save=False)
    assert after.outcome(timeout=300).images


def test_a_lora_is_found_by_sha256_and_a_lora_no_worker_has_fails_the_job_naming_it(ray_app: App) -> None:
    grain = addnet_sha256(ray_app.paths.lora / "grain.safetensors")
    jobs = [ray_app.submit(SMALL.with_changes(prompt="a red cube <lora:grain:0.8>", seed=seed), save=False)
            for seed in (41, 42)]
    for job in jobs:  # both workers were idle: one job went to worker-0 first, which lacks the LoRA
        result = job.outcome(timeout=300)
        assert job.worker == "worker-1" and f"Lora hashes: \"grain: {grain[:12]}\"" in result.infotexts[0]
        assert not result.comments  # applied in full, under the prompt's name
    failed = ray_app.submit(SMALL.with_changes(prompt="a red cube <lora:only-head:1>"), save=False)
    assert failed.wait(300) and failed.state is JobState.FAILED
    only_head = addnet_sha256(ray_app.paths.lora / "only-head.safetensors")
    assert failed.error_message == (
        f"No worker has the LoRA only-head.safetensors (sha256 {only_head}): each of the 2 worker(s) looked in its "
        f"node's models folder. Copy the file there (any name: it is found by its sha256).")


def kill_worker_of(app: App, job: Job) -> tuple[int, int]:
    """SIGKILL the process of the worker running `job` once it has made progress; (worker index, its pid)."""
    wait_for(lambda: running_with_progress(job))
    index = executor(app).worker_of(job.id)
    assert index is not None
    pid = executor(app).worker_pid(index)
    os.kill(pid, signal.SIGKILL)
    return index, pid


def test_a_killed_worker_re_queues_its_job_once_and_the_next_jobs_run(ray_app: App) -> None:
    doomed = ray_app.submit(SMALL.with_changes(steps=LONG_STEPS // 4, seed=5), save=False)
    index, pid = kill_worker_of(ray_app, doomed)
    result = doomed.outcome(timeout=300)  # queued again, then done on a worker
    assert doomed.state is JobState.DONE and result.images and doomed.requeues == 1
    assert doomed.worker != f"worker-{index}"  # not placed on the worker while it restarted
    note = (f"The worker process running this job (worker-{index}) stopped before the job ended; the job was "
            f"queued again and started over.")
    assert doomed.notes == (note,) and result.comments[-1] == note
    after = [ray_app.submit(SMALL.with_changes(seed=seed), save=False) for seed in (6, 7)]
    for job in after:
        assert job.outcome(timeout=300).images
    assert executor(ray_app).worker_pid(index) != pid  # Ray restarted the worker


def test_a_job_that_loses_its_worker_twice_fails(ray_app: App) -> None:
    doomed = ray_app.submit(SMALL.with_changes(steps=LONG_STEPS, seed=8), save=False)
    kill_worker_of(ray_app, doomed)
    wait_for(lambda: doomed.requeues == 1 and doomed.state is JobState.RUNNING)
    index, _pid = kill_worker_of(ray_app, doomed)
    assert doomed.wait(120) and doomed.state is JobState.FAILED
    assert doomed.error_message == (
        f"The worker process running this job (worker-{index}) stopped before the job ended for the second time "
        f"(it had been queued again once); the job failed. Ray restarts the worker, and the next job runs "
        f"normally.")
    assert ray_app.submit(SMALL.with_changes(seed=9), save=False).outcome(timeout=300).images
