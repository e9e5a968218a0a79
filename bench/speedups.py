"""Benchmark: seconds per UNet call with the optional speed-ups of `modules.models.speedups`.

The full-size SD 1.x UNet (bundled config, random weights, fp32 on the CPU unless `--device`), batch 2 (a prompt
and its negative) at `--size` px, one UNet in memory switched between the variants: eager, channels-last, fused
QKV, both, and torch.compile (of the eager layout; its compile time, the first call, is printed apart); and a
bfloat16 copy of it (the "Model precision" setting; inputs cast to bf16, as the denoise loop does). The
variants alternate round by round and each row is the median of `--repeat` calls (min-max beside it).

    .venv/bin/python bench/speedups.py --size 256 --repeat 3 [--no-compile] [--no-bf16] [--mode reduce-overhead]

Timings vary with machine load: compare the rows within one run, never absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.txt2img_overhead import real_sd1_random  # noqa: E402
from modules.models.speedups import COMPILE_MODES, CompiledForward  # noqa: E402

Variant = tuple[str, Callable[[], None], Callable[..., Any]]


def inputs(unet: Any, size: int, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    latent = size // 8
    sample = torch.randn((2, 4, latent, latent), generator=generator).to(device, dtype)
    context = torch.randn((2, 77, unet.config.cross_attention_dim), generator=generator).to(device, dtype)
    return {"sample": sample, "timestep": torch.tensor(500.0, device=device), "encoder_hidden_states": context,
            "return_dict": False}


def in_dtype(module: Any, dtype: torch.dtype) -> Callable[..., Any]:
    """`module` called with its floating-point tensor inputs cast to `dtype` (the timestep stays as it is)."""
    def call(**kwargs: Any) -> Any:
        cast = {key: value.to(dtype) if torch.is_tensor(value) and value.is_floating_point() and key != "timestep"
                else value for key, value in kwargs.items()}
        return module(**cast)
    return call


def variants(unet: Any, compile_mode: str | None, bf16: bool = True) -> list[Variant]:
    """(name, put the UNet in that state, the function to call) per variant; the UNet is fused once up front and
    the processors are switched (the same objects each time, so a compiled graph's guards keep holding)."""
    from diffusers.models.attention_processor import FusedAttnProcessor2_0

    plain = dict(unet.attn_processors)
    half = torch.nn.Module.to(copy.deepcopy(unet), dtype=torch.bfloat16) if bf16 else None
    unet.fuse_qkv_projections()
    fused = {name: FusedAttnProcessor2_0() for name in plain}

    def state(channels_last: bool, fuse: bool) -> Callable[[], None]:
        def apply() -> None:
            unet.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            unet.set_attn_processor(dict(fused if fuse else plain))
        return apply

    rows: list[Variant] = [("eager", state(False, False), unet), ("channels-last", state(True, False), unet),
                           ("fused QKV", state(False, True), unet), ("channels-last + fused", state(True, True), unet)]
    if bf16:  # a copy made before fusing, so it has the plain processors and layout
        rows.append(("bfloat16", lambda: None, in_dtype(half, torch.bfloat16)))
    if compile_mode is not None:
        rows.append((f"torch.compile ({compile_mode})", state(False, False), CompiledForward(unet, compile_mode)))
    return rows


@torch.inference_mode()
def timed(call: Callable[..., Any], kwargs: dict[str, Any], device: torch.device) -> float:
    started = time.perf_counter()
    call(**kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--mode", default="default", choices=COMPILE_MODES)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-bf16", action="store_true", help="leave out the bfloat16 row")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), torch.float16 if args.fp16 else torch.float32
    unet = real_sd1_random(device, dtype).unet
    kwargs = inputs(unet, args.size, device, dtype)
    rows = variants(unet, None if args.no_compile else args.mode, bf16=not args.no_bf16)
    print(f"SD 1.x UNet, random weights, {dtype}, {device}, {args.size}x{args.size}, batch 2, "
          f"{torch.get_num_threads()} threads")
    times: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    for name, apply, call in rows:  # warm-up: the first call of each (torch.compile compiles here)
        apply()
        first = timed(call, kwargs, device)
        print(f"  first call, {name}: {first:.2f} s" + (" (includes compilation)" if "compile" in name else ""))
    for _ in range(args.repeat):
        for name, apply, call in rows:
            apply()
            times[name].append(timed(call, kwargs, device))
    base = statistics.median(times["eager"])
    print(f"\n| variant | s per UNet call, median of {args.repeat} | min-max | vs eager |\n|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {min(values):.3f}-{max(values):.3f} | {base / median:.2f}x |")


if __name__ == "__main__":
    main()
