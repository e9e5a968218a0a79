"""Benchmark: our generation core against diffusers' pipelines on the same modules, on a GPU (issue #20).

    .venv/bin/python bench/gpu_side_by_side.py                     # CUDA: SD 1.5 at 512², SDXL at 1024², fp16
    .venv/bin/python bench/gpu_side_by_side.py --models sd1 --variants diffusers,ours --rounds 3
    .venv/bin/python bench/gpu_side_by_side.py --no-compile        # without the torch.compile variants
    .venv/bin/python bench/gpu_side_by_side.py --tiny --backend eager   # tiny models on the CPU (the smoke test)

It needs torch, diffusers and transformers only (no web packages): ours is `modules.core.generate.generate`, the
path every `/sdapi/v1` and UI job takes (the HTTP, PNG and base64 work around it measured 0.01-0.04 s per job on a
CPU, docs/performance.md). Each variant builds its model afresh from the bundled configs with the same random
weights, on the device, in fp16 (bf16 for the `+bf16` variant), and runs the same job: a prompt and a negative
prompt, Euler, CFG 7, `--steps`, batch 1. Variants:

- `diffusers`: `StableDiffusionPipeline` / `StableDiffusionXLPipeline` as its users run it (SDPA attention).
- `diffusers+fast`: with the speed options of diffusers' own guide: channels-last UNet, fused QKV projections and
  torch.compile of the UNet's forward (`--mode`).
- `ours`: our core in fp16.
- `ours+fast`: with our load-time speed-ups (`modules.models.speedups`): channels-last, fused QKV, torch.compile.
- `ours+bf16`: the "Model precision" setting at bfloat16.
- `ours+lossy`: token merging 0.5 and "Negative Guidance minimum sigma" 1.0 (both change the picture).

Printed per variant: the first job (it compiles, where torch.compile is on), then over `--rounds` jobs the median
seconds per picture, the sampling speed in it/s (steps / time spent in UNet calls), the peak device memory, and the
mean difference of its picture from `diffusers`' (colour levels of 255; ours and diffusers start from the same
noise, drawn on the CPU as A1111 does).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gpu_check import build_on  # noqa: E402
from modules.core.generate import generate  # noqa: E402
from modules.models.components import ComponentSet  # noqa: E402
from modules.models.configs import bundled_configs  # noqa: E402
from modules.models.identity import Family, ModelIdentity  # noqa: E402
from modules.models.speedups import (  # noqa: E402
    COMPILE_MODES,
    Speedups,
    apply_after_storage,
    apply_before_storage,
    compile_unet,
)
from modules.models.tiny import tiny_configs  # noqa: E402
from modules.samplers.registry import default_registry  # noqa: E402
from modules.types import GenerationRequest  # noqa: E402

MODELS = {"sd1": ModelIdentity(Family.SD1), "sdxl": ModelIdentity(Family.SDXL)}
VARIANTS = ("diffusers", "diffusers+fast", "ours", "ours+fast", "ours+bf16", "ours+lossy")
LOSSY = {"token_merging_ratio": 0.5, "s_min_uncond": 1.0}
PROMPT, NEGATIVE, SEED, CFG = "a red circle on a blue background, high detail", "blurry, lowres", 7, 7.0
EULER = default_registry().resolve("Euler")


@dataclass
class Setup:
    device: torch.device
    tiny: bool
    steps: int
    rounds: int
    compile_mode: str
    backend: str = "inductor"

    @property
    def half(self) -> torch.dtype:
        return torch.float16 if self.device.type == "cuda" else torch.float32

    def size(self, identity: ModelIdentity) -> int:
        return 64 if self.tiny else (1024 if identity.is_sdxl else 512)

    def build(self, identity: ModelIdentity, dtype: torch.dtype) -> ComponentSet:
        configs = tiny_configs(identity) if self.tiny else bundled_configs(identity)
        return build_on(identity, configs, dtype, self.device)


@dataclass
class UNetClock:
    """Seconds spent in a UNet's calls (device synchronised before and after each), by forward hooks."""

    device: torch.device
    seconds: float = 0.0
    _started: float = 0.0
    handles: list[Any] = field(default_factory=list)

    def attach(self, unet: torch.nn.Module) -> "UNetClock":
        self.handles = [unet.register_forward_pre_hook(self._before), unet.register_forward_hook(self._after)]
        return self

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _before(self, *_: Any) -> None:
        self._sync()
        self._started = time.perf_counter()

    def _after(self, *_: Any) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._started


@dataclass
class Result:
    first: float
    totals: list[float]
    unet: list[float]
    peak_gib: float | None
    picture: np.ndarray


def _pipeline(components: ComponentSet) -> Any:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    scheduler = EULER.scheduler_cls.from_config(EULER.scheduler_config(components.scheduler_config))
    if components.identity.is_sdxl:
        pipe = StableDiffusionXLPipeline(
            vae=components.vae, text_encoder=components.text_encoders[0], text_encoder_2=components.text_encoders[1],
            tokenizer=components.tokenizers[0], tokenizer_2=components.tokenizers[1], unet=components.unet,
            scheduler=scheduler, add_watermarker=False)
    else:
        pipe = StableDiffusionPipeline(
            vae=components.vae, text_encoder=components.text_encoders[0], tokenizer=components.tokenizers[0],
            unet=components.unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _diffusers_job(setup: Setup, components: ComponentSet, fast: bool) -> Callable[[int], np.ndarray]:
    pipe = _pipeline(components)
    if fast:  # diffusers' guide: channels-last, fused QKV, torch.compile of the UNet
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.fuse_qkv_projections()
        options: dict[str, Any] = {"backend": setup.backend, "dynamic": False}  # as ours compiles
        if setup.compile_mode != "default" and setup.backend == "inductor":
            options["mode"] = setup.compile_mode
        pipe.unet.forward = torch.compile(pipe.unet.forward, **options)
    size = setup.size(components.identity)

    def job(steps: int) -> np.ndarray:
        image = pipe(PROMPT, negative_prompt=NEGATIVE, width=size, height=size, num_inference_steps=steps,
                     guidance_scale=CFG, generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
        return np.asarray(image, dtype=np.float32)
    return job


def _ours_job(setup: Setup, components: ComponentSet, fast: bool, overrides: dict[str, Any]) -> Callable[[int], Any]:
    if fast:  # what the settings channels_last, fused_qkv and torch_compile do at load
        apply_before_storage(components, Speedups(fused_qkv=True))
        apply_after_storage(components, Speedups(channels_last=True))
        compile_unet(components, setup.compile_mode, setup.backend)
    size = setup.size(components.identity)

    def job(steps: int) -> np.ndarray:
        request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, seed=SEED, steps=steps, width=size,
                                    height=size, cfg_scale=CFG, sampler="Euler", overrides=overrides)
        return np.asarray(generate(request, components, EULER).images[0], dtype=np.float32)
    return job


def _reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def measure(setup: Setup, identity: ModelIdentity, variant: str) -> Result:
    """Build the variant's model, run its first job (compiles), then `setup.rounds` timed jobs."""
    dtype = torch.bfloat16 if variant.endswith("+bf16") else setup.half
    components = setup.build(identity, dtype)
    fast = variant.endswith("+fast")
    if variant.startswith("diffusers"):
        job = _diffusers_job(setup, components, fast)
    else:
        job = _ours_job(setup, components, fast, LOSSY if variant.endswith("+lossy") else {})
    started = time.perf_counter()
    job(setup.steps)
    first = time.perf_counter() - started
    _reset_peak(setup.device)
    clock = UNetClock(setup.device).attach(components.unet)
    totals, unet = [], []
    picture = np.zeros(0)
    for _ in range(setup.rounds):
        clock.seconds = 0.0
        started = time.perf_counter()
        picture = job(setup.steps)
        totals.append(time.perf_counter() - started)
        unet.append(clock.seconds)
    peak = torch.cuda.max_memory_allocated(setup.device) / 2**30 if setup.device.type == "cuda" else None
    del components, job
    _reset_peak(setup.device)
    return Result(first, totals, unet, peak, picture)


def report(setup: Setup, identity: ModelIdentity, results: dict[str, Result]) -> None:
    size = setup.size(identity)
    print(f"\n{identity.describe()} {size}x{size}, {setup.steps} steps, Euler, CFG {CFG}, batch 1, "
          f"median of {setup.rounds}\n")
    print("| variant | first job | s per picture | ratio | it/s (UNet calls) | peak memory | vs diffusers |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    base = statistics.median(next(iter(results.values())).totals)
    reference = results.get("diffusers")
    for name, result in results.items():
        total, unet = statistics.median(result.totals), statistics.median(result.unet)
        peak = f"{result.peak_gib:.2f} GiB" if result.peak_gib is not None else "n/a (CPU)"
        difference = "-" if reference is None or result is reference else \
            f"{float(np.abs(result.picture - reference.picture).mean()):.2f} levels"
        print(f"| {name} | {result.first:.2f} s | {total:.3f} s ({min(result.totals):.3f}-{max(result.totals):.3f})"
              f" | {total / base:.2f} | {setup.steps / unet if unet else 0:.2f} | {peak} | {difference} |",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="sd1,sdxl", help="comma-separated: sd1, sdxl")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=None, help="default: 20 (full size), 3 (--tiny)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", default="default", choices=COMPILE_MODES, help="torch.compile mode of +fast")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend of +fast (the smoke test: eager)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the +fast variants")
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU (the smoke test)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda" and not args.tiny:
        print("No CUDA device: run with --tiny for the CPU smoke test.")
        return 2
    variants = [name for name in args.variants.split(",") if name]
    unknown = [name for name in variants if name not in VARIANTS] + \
        [name for name in args.models.split(",") if name not in MODELS]
    if unknown:
        print(f"Unknown variant or model: {', '.join(unknown)}")
        return 2
    if args.no_compile:
        variants = [name for name in variants if not name.endswith("+fast")]
    setup = Setup(device, args.tiny, args.steps or (3 if args.tiny else 20), args.rounds, args.mode, args.backend)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"gpu_side_by_side on {name}, torch {torch.__version__}, {'tiny' if args.tiny else 'full-size'} models, "
          f"{str(setup.half).removeprefix('torch.')}", flush=True)
    for key in args.models.split(","):
        identity = MODELS[key]
        results = {variant: measure(setup, identity, variant) for variant in variants}
        report(setup, identity, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
