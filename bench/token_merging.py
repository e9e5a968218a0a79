"""Benchmark: seconds per UNet call with token merging (ToMe for SD) at several ratios.

The full-size SD 1.x UNet (bundled config, random weights; speed does not depend on the weights) is called on
random latents with a CFG-sized batch (2) and a 77-token text context, with the patch the core applies per pass
(`modules.core.token_merging`, A1111's arguments). The ratios alternate round by round so that load changes on a
shared machine spread over all of them; per ratio the median, the best run (the least disturbed on a loaded machine)
and the speed-up over the first ratio are printed.

    .venv/bin/python bench/token_merging.py                          # 512 and 256 px, ratios 0 0.3 0.5, 3 rounds
    .venv/bin/python bench/token_merging.py --sizes 512 --ratios 0 0.5 --rounds 5 --device cuda --dtype float16

ToMe merges tokens only where the UNet has no downsampling (4096 tokens at 512 px, 1024 at 256 px), so the gain
grows with the picture's size. Timings vary with machine load: compare within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.txt2img_overhead import real_sd1_random  # noqa: E402
from modules.core.token_merging import token_merging  # noqa: E402


def unet_call_seconds(unet: torch.nn.Module, size: int, ratio: float, batch: int) -> float:
    """One timed UNet call on `size`-pixel latents with `ratio` of the tokens merged."""
    device, dtype = unet.device, unet.dtype
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(batch, 4, size // 8, size // 8, generator=generator).to(device, dtype)
    context = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=generator).to(device, dtype)
    timestep = torch.tensor(500, device=device)
    with torch.inference_mode(), token_merging([unet], ratio):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        unet(sample, timestep, encoder_hidden_states=context)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 256])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.3, 0.5])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2, help="UNet batch (2 = one image with CFG)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    args = parser.parse_args()
    unet = real_sd1_random(torch.device(args.device), getattr(torch, args.dtype)).unet
    print(f"SD 1.x UNet, random weights, {args.device} {args.dtype}, batch {args.batch}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for size in args.sizes:
        unet_call_seconds(unet, size, 0.0, args.batch)  # warm-up
        times: dict[float, list[float]] = {ratio: [] for ratio in args.ratios}
        for _ in range(args.rounds):
            for ratio in args.ratios:
                times[ratio].append(unet_call_seconds(unet, size, ratio, args.batch))
        base = statistics.median(times[args.ratios[0]])
        for ratio in args.ratios:
            median = statistics.median(times[ratio])
            runs = ", ".join(f"{seconds:.2f}" for seconds in times[ratio])
            print(f"{size}x{size}  ratio {ratio:.1f}: {median:7.3f} s per UNet call, best {min(times[ratio]):.3f} "
                  f"(x{base / median:.2f} vs ratio {args.ratios[0]:.1f}; runs {runs})")


if __name__ == "__main__":
    main()
