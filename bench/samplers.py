"""Sampler overhead per model call: every sampler's `step` (and `scale_model_input`) on SDXL-sized latents
(batch 1, 4x128x128) with a fake model output, so the number is what the sampler adds to each UNet call.

The four samplers that run on our sigma-list functions (DPM++ 2S a, DPM fast, DPM adaptive, Restart) replace no
diffusers scheduler; they are listed beside the diffusers samplers closest to them (Euler a, Heun, DPM2 a).

    .venv/bin/python bench/samplers.py [--steps 20] [--repeat 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modules.models.tiny import BASE_SCHEDULER_CONFIG  # noqa: E402
from modules.samplers.registry import default_registry  # noqa: E402


def per_call_ms(name: str, steps: int, device: str) -> tuple[float, int]:
    """(milliseconds per model call, model calls) of one run of `name` with a fake, cheap model output."""
    method = default_registry().resolve(name)
    generator = torch.Generator("cpu").manual_seed(0)
    x = torch.randn(1, 4, 128, 128, generator=generator).to(device)
    scheduler = method.build(BASE_SCHEDULER_CONFIG, steps, device)
    x = x * float(scheduler.init_noise_sigma)
    kwargs = method.step_kwargs(None, [torch.Generator("cpu").manual_seed(1)])
    calls, index = 0, 0
    started = time.perf_counter()
    while index < len(scheduler.timesteps):
        t = scheduler.timesteps[index]
        model_input = scheduler.scale_model_input(x, t)
        fake = 0.1 * model_input  # stands in for the UNet
        x = scheduler.step(fake, t, x, **kwargs).prev_sample
        calls += 1
        index += 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - started) * 1000 / calls, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows = [("DPM++ 2S a", "DPM2 a"), ("Restart", "Heun"), ("DPM fast", "Euler a"), ("DPM adaptive", "Euler a")]
    print(f"{'sampler':<14} {'ms/call':>8} {'calls':>6}   {'nearest diffusers':<18} {'ms/call':>8} {'calls':>6}")
    for ours, theirs in rows:
        mine = [per_call_ms(ours, args.steps, args.device) for _ in range(args.repeat)]
        other = [per_call_ms(theirs, args.steps, args.device) for _ in range(args.repeat)]
        print(f"{ours:<14} {statistics.median(m for m, _ in mine):8.3f} {mine[0][1]:6d}   "
              f"{theirs:<18} {statistics.median(m for m, _ in other):8.3f} {other[0][1]:6d}")


if __name__ == "__main__":
    main()
