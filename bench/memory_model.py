"""Measure the peak working memory of a UNet call, a VAE decode and a VAE encode on the real architectures (bundled
configs, random weights), to calibrate the job admission estimate (`modules/core/memory.py`).

Each case runs in a fresh process with glibc's mmap threshold fixed at 128 KiB (so freed tensors leave resident
memory at once): build the model, trim the heap, reset the kernel's peak-RSS mark (`/proc/self/clear_refs`), run
once under `torch.inference_mode`, and report the peak resident memory above what the process held just before
(`VmHWM - VmRSS`). That is the working memory the call needed beyond the weights, on the CPU. On a CUDA machine
(`--device cuda`) it reports `torch.cuda.max_memory_allocated` above the allocation before the call instead.
Linux only (it reads /proc).

    .venv/bin/python bench/memory_model.py                       # SD 1.x, fp32, a small grid
    .venv/bin/python bench/memory_model.py --family sdxl --dtype bfloat16 --latents 32

It prints one line per case and, per part, the bytes per element of the working set that the estimate uses
(UNet: per latent pixel per batch row; VAE: per output pixel).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def _measure(family: str, dtype_name: str, part: str, latent: int, rows: int, device: str) -> dict[str, float]:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from modules.models.configs import bundled_configs
    from modules.models.identity import Family, ModelIdentity

    torch.set_num_threads(2)
    dtype = getattr(torch, dtype_name)
    identity = ModelIdentity(Family.SDXL if family == "sdxl" else Family.SD1)
    configs = bundled_configs(identity)
    torch.manual_seed(0)
    if part == "unet":
        model = UNet2DConditionModel.from_config(configs["unet"])
    else:
        model = AutoencoderKL.from_config(configs["vae"])
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    with torch.inference_mode():
        if part == "unet":
            config = model.config
            width = config.cross_attention_dim
            inputs = {"sample": torch.randn(rows, 4, latent, latent, dtype=dtype, device=device),
                      "timestep": torch.tensor(500, device=device),
                      "encoder_hidden_states": torch.randn(rows, 77, width, dtype=dtype, device=device)}
            if family == "sdxl":
                inputs["added_cond_kwargs"] = {
                    "text_embeds": torch.randn(rows, 1280, dtype=dtype, device=device),
                    "time_ids": torch.zeros(rows, 6, dtype=dtype, device=device)}
            run = lambda: model(**inputs)  # noqa: E731
        elif part == "vae_decode":
            latents = torch.randn(rows, 4, latent, latent, dtype=dtype, device=device)
            run = lambda: model.decode(latents)  # noqa: E731
        else:
            pixels = torch.randn(rows, 3, latent * 8, latent * 8, dtype=dtype, device=device)
            run = lambda: model.encode(pixels)  # noqa: E731
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            run()
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - before
        else:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so RSS is what is live
            Path("/proc/self/clear_refs").write_text("5")
            before = _status_kib("VmRSS")
            run()
            peak = (_status_kib("VmHWM") - before) * 1024
    return {"peak_bytes": float(peak)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=("sd1", "sdxl"), default="sd1")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parts", default="unet,vae_decode,vae_encode")
    parser.add_argument("--latents", default="16,32", help="latent sides to measure (pixels / 8)")
    parser.add_argument("--rows", default="1,2", help="batch rows to measure")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        part, latent, rows = args.one.split(":")
        print(json.dumps(_measure(args.family, args.dtype, part, int(latent), int(rows), args.device)))
        return
    for part in args.parts.split(","):
        per_element = []
        for latent in (int(value) for value in args.latents.split(",")):
            for rows in (int(value) for value in args.rows.split(",")):
                if part != "unet" and rows > 1:
                    continue  # the VAE runs one image at a time
                # a fixed mmap threshold: every tensor above 128 KiB is mapped on allocation and unmapped when
                # freed, so resident memory follows live tensors (glibc otherwise keeps freed blocks resident)
                env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
                env.pop("LD_PRELOAD", None)
                out = subprocess.run([sys.executable, __file__, "--family", args.family, "--dtype", args.dtype,
                                      "--device", args.device, "--one", f"{part}:{latent}:{rows}"],
                                     check=True, capture_output=True, text=True, env=env).stdout
                peak = json.loads(out.strip().splitlines()[-1])["peak_bytes"]
                elements = rows * latent * latent if part == "unet" else (latent * 8) ** 2
                per_element.append(peak / elements)
                print(f"{args.family} {args.dtype} {part:10s} latent {latent:3d}x{latent:<3d} rows {rows}: "
                      f"peak {peak / 2**20:8.1f} MiB, {peak / elements:9.0f} B per "
                      f"{'latent pixel x row' if part == 'unet' else 'output pixel'}", flush=True)
        print(f"{args.family} {args.dtype} {part}: max {max(per_element):.0f} B per element", flush=True)


if __name__ == "__main__":
    main()
