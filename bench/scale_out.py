"""Benchmark: the Ray executor (`--workers`) against the local executor, on the real App with a tiny SD1 checkpoint.

Prints, never asserts:
- per-job overhead: the median wall time of one job (submit -> outcome, run one after another) on the local
  executor and on one Ray worker, and their difference (the cost of the actor call, the settings snapshot, the
  progress polls and moving the request and the images through Ray);
- the round trip of one empty actor call;
- throughput: images per minute with 1 and 2 (or --workers) Ray workers for --jobs jobs submitted at once.

    /work/ray-venv/bin/python bench/scale_out.py                  # tiny model, 64 px, 3 steps (quick)
    /work/ray-venv/bin/python bench/scale_out.py --steps 20 --jobs 8 --workers 1 2 4

Torch runs on one thread in both paths (a Ray worker with num_cpus=1 does; the local run is set to match), so the
difference is the executor's. Timings vary with machine load: compare within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modules.bootstrap import build_app  # noqa: E402
from modules.cli import LaunchOptions  # noqa: E402
from modules.types import GenerationRequest  # noqa: E402
from tests.core.helpers import write_tiny_checkpoint  # noqa: E402


def job_times(app: object, request: GenerationRequest, repeat: int) -> list[float]:
    times = []
    for index in range(repeat):
        start = time.perf_counter()
        app.submit(request.with_changes(seed=index), save=False).outcome(timeout=600)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=15, help="sequential jobs per executor for the overhead")
    parser.add_argument("--jobs", type=int, default=6, help="jobs submitted at once for the throughput")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpus", type=int, default=2, help="num_cpus of the local Ray cluster")
    args = parser.parse_args()

    import ray
    import torch

    torch.set_num_threads(1)
    request = GenerationRequest(prompt="a red cube", steps=args.steps, width=args.size, height=args.size,
                                sampler="Euler", cfg_scale=5.0)
    data = Path(tempfile.mkdtemp(prefix="scale_out_"))
    write_tiny_checkpoint(data)

    local = build_app(LaunchOptions(data_dir=data))
    job_times(local, request, 2)  # load the model
    local_times = job_times(local, request, args.repeat)
    local.close()

    start = time.perf_counter()
    ray.init(num_cpus=max(args.cpus, max(args.workers)), include_dashboard=False, log_to_driver=False,
             object_store_memory=100 * 1024 * 1024)
    print(f"ray.init: {time.perf_counter() - start:.2f} s")
    for workers in args.workers:
        start = time.perf_counter()
        app = build_app(LaunchOptions(data_dir=data, workers=workers))
        for job in [app.submit(request, save=False) for _ in range(workers)]:
            job.outcome(timeout=600)
        print(f"{workers} worker(s): start and first job on each {time.perf_counter() - start:.2f} s")
        if workers == 1:
            actor = app.jobs._executor._slots[0].actor  # type: ignore[attr-defined]
            calls = []
            for _ in range(50):
                begin = time.perf_counter()
                ray.get(actor.pid.remote())
                calls.append(time.perf_counter() - begin)
            print(f"one empty actor call (round trip), median of 50: {statistics.median(calls) * 1000:.2f} ms")
            ray_times = job_times(app, request, args.repeat)
            local_median, ray_median = statistics.median(local_times), statistics.median(ray_times)
            print(f"per job ({args.size} px, {args.steps} steps, median of {args.repeat}): local "
                  f"{local_median * 1000:.1f} ms, Ray worker {ray_median * 1000:.1f} ms, overhead "
                  f"{(ray_median - local_median) * 1000:.1f} ms ({ray_median / local_median - 1:+.1%})")
        start = time.perf_counter()
        for job in [app.submit(request.with_changes(seed=i), save=False) for i in range(args.jobs)]:
            job.outcome(timeout=600)
        elapsed = time.perf_counter() - start
        print(f"{workers} worker(s): {args.jobs} jobs at once in {elapsed:.2f} s = "
              f"{args.jobs * request.batch_size / elapsed * 60:.0f} images/min")
        app.close()
    ray.shutdown()


if __name__ == "__main__":
    main()
