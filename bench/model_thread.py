"""Benchmark: UNet calls of the full-size SD 1.5 architecture from the main thread or a worker thread, per allocator.

Our job queue runs the model in a worker thread; diffusers' users call it from the main thread. With glibc's
allocator the large activation buffers of each call are returned to the kernel and faulted in again, and a worker
thread allocates from its own arena. Each variant runs in its own process (so each has its own allocator state), the
variants alternate over the rounds, and each prints the median seconds per call and the minor page faults per call
(faults do not depend on the machine's load; times do).

Variants: `main` / `worker` (the thread that calls the UNet) x `glibc` (default), `tuned` (glibc with the settings
`modules/allocator.py` applies at start-up) and `tcmalloc` (Debian's, preloaded as `./webui.sh` does).

    .venv/bin/python bench/model_thread.py --size 256 --calls 3 --rounds 2
    .venv/bin/python bench/model_thread.py --variants worker-glibc,worker-tuned
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = ("main-glibc", "worker-glibc", "worker-tuned", "main-tcmalloc", "worker-tcmalloc")


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(size: int, calls: int, thread: str) -> dict[str, Any]:
    """(in the child) seconds and minor faults per UNet call, batch 2 (CFG), after one warm-up call."""
    import torch
    from diffusers import UNet2DConditionModel

    from modules.models.configs import bundled_configs
    from modules.models.identity import Family, ModelIdentity

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(bundled_configs(ModelIdentity(Family.SD1))["unet"]).eval()
    latents = torch.randn(2, 4, size // 8, size // 8)
    text = torch.randn(2, 77, 768)
    result: dict[str, Any] = {}

    def run() -> None:
        with torch.inference_mode():
            unet(latents, 500, encoder_hidden_states=text)
            times, faults = [], []
            for _ in range(calls):
                started, faulted = time.perf_counter(), _faults()
                unet(latents, 500, encoder_hidden_states=text)
                times.append(time.perf_counter() - started)
                faults.append(_faults() - faulted)
        result.update(seconds=statistics.median(times), faults=statistics.median(faults))

    if thread == "main":
        run()
    else:
        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
    return result


def _child(variant: str, size: int, calls: int) -> dict[str, Any]:
    thread, allocator = variant.split("-")
    env = dict(os.environ)
    if allocator == "tcmalloc":
        from bench.side_by_side import tcmalloc_path

        path = tcmalloc_path()
        if path is None:
            return {"skipped": "libtcmalloc-minimal4 not installed"}
        env["LD_PRELOAD"] = path
    code = ("import json, sys; sys.path.insert(0, %r); from bench.model_thread import measure; "
            "from modules.allocator import tune_allocator; %s"
            "print(json.dumps(measure(%d, %d, %r)))") % (
        str(ROOT), "tune_allocator(); " if allocator == "tuned" else "", size, calls, thread)
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    variants = args.variants.split(",")
    rows: dict[str, list[dict[str, Any]]] = {variant: [] for variant in variants}
    for round_no in range(args.rounds):
        order = variants[round_no % len(variants):] + variants[:round_no % len(variants)]
        for variant in order:
            rows[variant].append(_child(variant, args.size, args.calls))
            print(f"round {round_no + 1} {variant}: {rows[variant][-1]}", flush=True)
    print(f"\nSD 1.5 UNet, batch 2, {args.size}², median over {args.rounds} rounds x {args.calls} calls")
    print(f"{'variant':<18}{'s/call':>10}{'faults/call':>14}")
    for variant, results in rows.items():
        done = [result for result in results if "seconds" in result]
        if not done:
            print(f"{variant:<18}{'skipped':>10}")
            continue
        seconds = statistics.median(result["seconds"] for result in done)
        faults = statistics.median(result["faults"] for result in done)
        print(f"{variant:<18}{seconds:>10.2f}{faults:>14,.0f}")


if __name__ == "__main__":
    main()
