"""Sampler overhead per model call: every sampler's `step` (and `scale_model_input`) on SDXL-sized latents
(batch 1, 4x128x128) with a fake model output, so the number is what the sampler adds to each UNet call.

Euler a, DDIM, PLMS, DPM++ 2M SDE, DPM++ 2M, DPM2, DPM2 a and DPM++ SDE replace diffusers'
EulerAncestralDiscreteScheduler, DDIMScheduler, PNDMScheduler, DPMSolverMultistepScheduler (SDE and 2M),
KDPM2DiscreteScheduler, KDPM2AncestralDiscreteScheduler and DPMSolverSDEScheduler: those rows compare with the
scheduler replaced, configured as the registry had it (Automatic schedule). DPM++ 2S a, DPM fast, DPM adaptive,
Restart and DDIM CFG++ replace none; they are listed beside the diffusers samplers closest to them. The churned
Euler (sigma churn on) replaces diffusers' Euler, which churns inside its step.

    .venv/bin/python bench/samplers.py [--steps 20] [--repeat 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffusers import (  # noqa: E402
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSDEScheduler,
    EulerAncestralDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    PNDMScheduler,
)

from modules.models.tiny import BASE_SCHEDULER_CONFIG  # noqa: E402
from modules.samplers.registry import default_registry  # noqa: E402
from modules.samplers.tuning import SamplerSettings  # noqa: E402

REPLACED = {
    "diffusers Euler a": lambda: EulerAncestralDiscreteScheduler.from_config(
        {**BASE_SCHEDULER_CONFIG, "timestep_spacing": "linspace"}),
    "diffusers DDIM": lambda: DDIMScheduler.from_config(
        {**BASE_SCHEDULER_CONFIG, "clip_sample": False, "set_alpha_to_one": False}),
    "diffusers PLMS": lambda: PNDMScheduler.from_config(
        {**BASE_SCHEDULER_CONFIG, "skip_prk_steps": True, "set_alpha_to_one": False}),
    "diffusers 2M SDE": lambda: DPMSolverMultistepScheduler.from_config(
        {**BASE_SCHEDULER_CONFIG, "algorithm_type": "sde-dpmsolver++", "solver_order": 2, "solver_type": "midpoint",
         "use_exponential_sigmas": True, "timestep_spacing": "linspace"}),
    "diffusers DPM++ 2M": lambda: DPMSolverMultistepScheduler.from_config(
        {**BASE_SCHEDULER_CONFIG, "algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "diffusers DPM2": lambda: KDPM2DiscreteScheduler.from_config({**BASE_SCHEDULER_CONFIG, "use_karras_sigmas": True}),
    "diffusers DPM2 a": lambda: KDPM2AncestralDiscreteScheduler.from_config(
        {**BASE_SCHEDULER_CONFIG, "use_karras_sigmas": True}),
    "diffusers DPM++ SDE": lambda: DPMSolverSDEScheduler.from_config(
        {**BASE_SCHEDULER_CONFIG, "use_karras_sigmas": True, "noise_sampler_seed": 0}),
}
"""The diffusers schedulers our samplers replaced, configured as the registry had them."""


def per_call_ms(name: str, steps: int, device: str) -> tuple[float, int]:
    """(milliseconds per model call, model calls) of one run of `name` with a fake, cheap model output."""
    generator = torch.Generator("cpu").manual_seed(0)
    x = torch.randn(1, 4, 128, 128, generator=generator).to(device)
    step_generator = [torch.Generator("cpu").manual_seed(1)]
    if name in REPLACED:
        scheduler = REPLACED[name]()
        scheduler.set_timesteps(steps, device=device)
        kwargs: dict = {"generator": step_generator} if "generator" in inspect.signature(scheduler.step).parameters \
            else {}
    else:
        method = default_registry().resolve(name.removesuffix(" churn"))
        tuning = method.tune(SamplerSettings(s_churn=1.0 if name.endswith(" churn") else 0.0))
        scheduler = method.build(BASE_SCHEDULER_CONFIG, steps, device, tuning=tuning)
        kwargs = method.step_kwargs(None, step_generator)
        if method.needs_uncond:
            kwargs["noise_pred_uncond"] = torch.zeros_like(x)
    x = x * float(scheduler.init_noise_sigma)
    start = getattr(scheduler, "start", None)
    if start is not None:
        x = start(x, step_generator)
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
    rows = [("Euler a", "diffusers Euler a"), ("DDIM", "diffusers DDIM"), ("PLMS", "diffusers PLMS"),
            ("DPM++ 2M SDE", "diffusers 2M SDE"), ("DPM++ 2M", "diffusers DPM++ 2M"), ("DPM2", "diffusers DPM2"),
            ("DPM2 a", "diffusers DPM2 a"), ("DPM++ SDE", "diffusers DPM++ SDE"), ("Euler churn", "Euler"),
            ("DPM++ 2S a", "DPM2 a"),
            ("Restart", "Heun"), ("DPM fast", "diffusers Euler a"), ("DPM adaptive", "diffusers Euler a"),
            ("DDIM CFG++", "diffusers DDIM")]
    print(f"{'sampler':<14} {'ms/call':>8} {'calls':>6}   {'diffusers':<18} {'ms/call':>8} {'calls':>6}")
    for ours, theirs in rows:
        mine = [per_call_ms(ours, args.steps, args.device) for _ in range(args.repeat)]
        other = [per_call_ms(theirs, args.steps, args.device) for _ in range(args.repeat)]
        print(f"{ours:<14} {statistics.median(m for m, _ in mine):8.3f} {mine[0][1]:6d}   "
              f"{theirs:<18} {statistics.median(m for m, _ in other):8.3f} {other[0][1]:6d}")


if __name__ == "__main__":
    main()
