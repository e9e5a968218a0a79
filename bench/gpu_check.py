"""GPU acceptance run: one script that, on a CUDA machine, checks and measures what only a GPU shows.

    .venv/bin/python bench/gpu_check.py              # CUDA: full-size SD 1.5 and SDXL, random weights (< 8 min)
    .venv/bin/python bench/gpu_check.py --tiny       # anywhere: tiny models on the CPU (the smoke test in ./test.sh)

It prints one line per check, `PASS`/`FAIL` and its numbers:
1. fp16 speed: iterations per second of our generation core at 512x512 (SD 1.5) and 1024x1024 (SDXL), peak memory;
2. fp16 against fp32: mean difference of the same picture (colour levels);
3. the NaN VAE fallback (A1111's auto_vae_precision): a half-precision VAE pass forced to NaN is done again in fp32
   with a note;
4. an out-of-memory job (injected in the loop) fails with a clear message, frees its memory, and the next job on the
   same model works;
5. `--medvram` / `--lowvram` (offload "model" / "sequential"): peak device memory of one picture each;
6. device memory over 10 checkpoint switches through the model manager (budget 1): flat.
Models are built from the bundled configs with random weights directly on the device (nothing downloaded). Output
of a run on a lent GPU belongs in docs/gpu-check.md.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modules.core import vae as vae_module  # noqa: E402
from modules.core.generate import generate  # noqa: E402
from modules.errors import OutOfMemory  # noqa: E402
from modules.models.components import ComponentSet  # noqa: E402
from modules.models.configs import bundled_configs  # noqa: E402
from modules.models.identity import Family, ModelIdentity  # noqa: E402
from modules.models.tiny import build_random_components, tiny_configs  # noqa: E402
from modules.samplers.registry import default_registry  # noqa: E402
from modules.types import GenerationRequest  # noqa: E402

SD1, SDXL = ModelIdentity(Family.SD1), ModelIdentity(Family.SDXL)
EULER = default_registry().resolve("Euler")


@dataclass
class Setup:
    """Where and how big: the device, model configs (full or tiny), sizes and steps per family."""

    device: torch.device
    tiny: bool
    steps: int

    def configs(self, identity: ModelIdentity) -> dict:
        return tiny_configs(identity) if self.tiny else bundled_configs(identity)

    def size(self, identity: ModelIdentity) -> int:
        if self.tiny:
            return 64
        return 1024 if identity.is_sdxl else 512

    def build(self, identity: ModelIdentity, dtype: torch.dtype, seed: int = 0,
              device: torch.device | None = None) -> ComponentSet:
        return build_on(identity, self.configs(identity), dtype, device or self.device, seed)

    def request(self, identity: ModelIdentity, **fields: object) -> GenerationRequest:
        size = self.size(identity)
        values: dict = {"prompt": "a red circle on a blue background", "negative_prompt": "blurry", "seed": 7,
                        "steps": self.steps, "width": size, "height": size, "sampler": "Euler", **fields}
        return GenerationRequest(**values)

    @property
    def half(self) -> torch.dtype:
        return torch.float16 if self.device.type == "cuda" else torch.bfloat16


def build_on(identity: ModelIdentity, configs: dict, dtype: torch.dtype, device: torch.device,
             seed: int = 0) -> ComponentSet:
    """Components of `identity` with random weights (`seed`), made on `device` in `dtype`."""
    components = build_random_components(identity, configs, seed, device)
    for module in components.modules():
        torch.nn.Module.to(module, dtype=dtype)  # (diffusers' own `to` warns about fp32 modules it has none of)
    components.dtype = components.vae_dtype = dtype
    return components


def _peak_reset(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> str:
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if device.type == "cuda" else "n/a on the CPU"


def _allocated(device: torch.device) -> float:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return torch.cuda.memory_allocated(device) / 2**30
    import psutil

    return psutil.Process().memory_info().rss / 2**30


def _line(ok: bool, name: str, text: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {text}", flush=True)
    return ok


def check_speed(setup: Setup, identity: ModelIdentity) -> bool:
    components = setup.build(identity, setup.half)
    request = setup.request(identity)
    generate(request.with_changes(steps=2), components, EULER)  # warm-up: kernels, allocator
    _peak_reset(setup.device)
    started = time.perf_counter()
    output = generate(request, components, EULER)
    seconds = time.perf_counter() - started
    denoise = output.timings.get("denoise", seconds)
    size = setup.size(identity)
    finite = bool(np.isfinite(np.asarray(output.images[0], dtype=np.float32)).all())
    return _line(finite, f"{identity.family.value} {size}x{size} {str(setup.half).removeprefix('torch.')}",
                 f"{setup.steps / denoise:.2f} it/s (denoise {denoise:.2f} s, total {seconds:.2f} s), "
                 f"peak {_peak(setup.device)}")


def check_precision(setup: Setup) -> bool:
    request = setup.request(SD1)
    half = np.asarray(generate(request, setup.build(SD1, setup.half), EULER).images[0], dtype=np.float32)
    full = np.asarray(generate(request, setup.build(SD1, torch.float32), EULER).images[0], dtype=np.float32)
    difference = float(np.abs(half - full).mean())
    return _line(difference < 8.0, "fp16 vs fp32 (SD 1.5)", f"mean difference {difference:.2f} levels of 255")


def check_nan_vae(setup: Setup) -> bool:
    components = setup.build(SD1, setup.half)
    real = vae_module.decode_latents

    def nan_in_half(vae, latents, dtype):  # noqa: ANN001, ANN202 - same signature as decode_latents
        result = real(vae, latents, dtype)
        return result * float("nan") if dtype != torch.float32 else result

    vae_module.decode_latents = nan_in_half
    try:
        output = generate(setup.request(SD1), components, EULER)
    finally:
        vae_module.decode_latents = real
    pixels = np.asarray(output.images[0], dtype=np.float32)
    ok = bool(output.notes) and components.vae_dtype == torch.float32 and pixels.std() > 0
    return _line(ok, "NaN VAE fallback", f"notes {list(output.notes)}; VAE now {components.vae_dtype}")


def check_oom_recovery(setup: Setup) -> bool:
    import modules.core.batch as batch_module

    components = setup.build(SD1, setup.half)
    before = _allocated(setup.device)
    real = batch_module.run_denoise

    def fail(loop):  # noqa: ANN001, ANN202
        torch.empty(64, 1024, 1024, device=setup.device)  # some memory the failed job held
        raise torch.OutOfMemoryError("CUDA out of memory (injected by gpu_check)")

    batch_module.run_denoise = fail
    try:
        generate(setup.request(SD1), components, EULER)
        failed = False
    except OutOfMemory:
        failed = True
    finally:
        batch_module.run_denoise = real
    after = _allocated(setup.device)
    good = generate(setup.request(SD1), components, EULER).images
    ok = failed and bool(good) and after <= before + 0.05
    return _line(ok, "injected OOM then a good job", f"OutOfMemory raised: {failed}; memory {before:.2f} -> "
                 f"{after:.2f} GiB; next job made {len(good)} picture(s)")


def check_offload(setup: Setup) -> bool:
    from modules.models.offload import apply_offload

    results = []
    for flag, mode in (("--medvram", "model"), ("--lowvram", "sequential")):
        components = setup.build(SD1, setup.half, device=torch.device("cpu"))
        apply_offload(components, mode, setup.device)
        _peak_reset(setup.device)
        output = generate(setup.request(SD1, steps=2), components, EULER)
        results.append((flag, bool(output.images), _peak(setup.device)))
        del components
    text = ", ".join(f"{flag} peak {peak}" for flag, _, peak in results)
    return _line(all(ok for _, ok, _ in results), "offload", text)


def check_switches(setup: Setup, tmp: Path) -> bool:
    from modules.devices import DevicePlan
    from modules.models.hashes import HashCache
    from modules.models.manager import ModelManager, ModelOptions
    from modules.paths import DataPaths

    paths = DataPaths(tmp)
    paths.checkpoints.mkdir(parents=True, exist_ok=True)
    for name in ("a", "b"):
        (paths.checkpoints / f"{name}.safetensors").write_bytes(name.encode() * 64)
    plan = DevicePlan(setup.device, setup.half, setup.half)

    def load(record, _plan):  # noqa: ANN001, ANN202
        return setup.build(SD1, setup.half, seed=len(record.name))

    manager = ModelManager(paths, ModelOptions(sd_checkpoints_limit=1), load_fn=load, device_plan=plan,
                           hash_cache=HashCache(None), no_hashing=True)
    readings: list[float] = []
    for index in range(10):
        with manager.get("a" if index % 2 == 0 else "b"):
            pass
        readings.append(_allocated(setup.device))
    manager.unload()
    growth = readings[-1] - readings[1]
    return _line(growth < 0.1, "10 checkpoint switches (budget 1)",
                 "memory " + " ".join(f"{value:.2f}" for value in readings) + f" GiB (growth {growth:+.2f})")


def run(setup: Setup, tmp: Path, only: Callable[[str], bool] = lambda name: True) -> bool:
    checks: list[tuple[str, Callable[[], bool]]] = [
        ("speed", lambda: check_speed(setup, SD1) & check_speed(setup, SDXL)),
        ("precision", lambda: check_precision(setup)),
        ("nan", lambda: check_nan_vae(setup)),
        ("oom", lambda: check_oom_recovery(setup)),
        ("offload", lambda: check_offload(setup)),
        ("switches", lambda: check_switches(setup, tmp)),
    ]
    results = [check() for name, check in checks if only(name)]
    return all(results)


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny models (the CPU smoke test)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--steps", type=int, default=None, help="default: 20 (full size), 2 (--tiny)")
    parser.add_argument("--only", default="", help="comma-separated checks: speed,precision,nan,oom,offload,switches")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda" and not args.tiny:
        print("No CUDA device: run with --tiny for the CPU smoke test.")
        return 2
    setup = Setup(device, args.tiny, args.steps or (2 if args.tiny else 20))
    names = {name for name in args.only.split(",") if name}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"gpu_check on {name} ({'tiny' if args.tiny else 'full-size'} models, torch {torch.__version__})")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ok = run(setup, Path(tmp), (lambda check: check in names) if names else (lambda check: True))
    print(f"{'ALL PASS' if ok else 'SOME FAILED'} in {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
