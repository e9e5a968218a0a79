"""Benchmark: an upscaler model file tiled vs untiled, and the hires pass's share of a hires generation.

Part 1 builds a full-size 4x Real-ESRGAN network (RRDBNet: 64 filters, 23 blocks, the architecture of
`RealESRGAN_x4plus.pth`) with random weights, saves it as a `.pth` and loads it through the program's own path
(`modules.upscalers.model_files`), then upscales a `--size` picture untiled and in `--tile`/`--overlap` tiles:
median time and peak memory of each (CUDA: peak allocated; CPU: peak resident set growth, sampled every 5 ms).
Part 2 times txt2img, then the same request with hires fix (x2, the model file as upscaler): the difference is the
hires pass (upscale + encode + second pass), printed as its share of the hires generation.

    .venv/bin/python bench/upscale.py                       # 512 px picture; tiny SD1 model for part 2
    .venv/bin/python bench/upscale.py --size 128 --repeat 1 # quick, on a CPU
    .venv/bin/python bench/upscale.py --model sd1 --gen-size 256   # real SD 1.x architecture, random weights

Timings vary with machine load: compare within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.txt2img_overhead import real_sd1_random  # noqa: E402
from modules.core.generate import generate  # noqa: E402
from modules.models.identity import Family, ModelIdentity  # noqa: E402
from modules.models.tiny import build_tiny_components  # noqa: E402
from modules.samplers.registry import default_registry  # noqa: E402
from modules.types import GenerationRequest  # noqa: E402
from modules.upscalers.model_files import load_model, run_model  # noqa: E402
from modules.upscalers.registry import UpscalerRegistry  # noqa: E402


class PeakMemory:
    """Peak memory of a block: CUDA's peak allocated bytes, or on a CPU the peak RSS above the start."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            process = psutil.Process()
            self._base = process.memory_info().rss
            self._thread = threading.Thread(target=self._sample, args=(process,), daemon=True)
            self._thread.start()
        return self

    def _sample(self, process: psutil.Process) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss - self._base)
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
        else:
            self._stop.set()
            self._thread.join()


def save_realesrgan_x4plus(path: Path) -> Path:
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4)
    torch.save({"params_ema": net.state_dict()}, path)
    return path


def bench_tiles(path: Path, args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> None:
    model = load_model(path, device, dtype)
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8))
    print(f"part 1: {model.architecture.name} x{model.scale}, {sum(p.numel() for p in model.model.parameters()):,}"
          f" parameters, {model.dtype}, on {device}; picture {args.size}x{args.size}")
    run_model(model, picture.resize((64, 64)), 0, 0)  # warm-up
    for label, tile, overlap in (("untiled", 0, 0), (f"tiles {args.tile}+{args.overlap}", args.tile, args.overlap)):
        times, peaks = [], []
        for _ in range(args.repeat):
            with PeakMemory(device) as memory:
                started = time.perf_counter()
                result = run_model(model, picture, tile, overlap)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - started)
            peaks.append(memory.peak)
        print(f"  {label:<16} median {statistics.median(times):7.2f}s  peak memory {max(peaks) / 2**20:8.1f} MiB"
              f"  -> {result.size[0]}x{result.size[1]}")


def bench_hires_share(path: Path, args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> None:
    from contextlib import contextmanager

    components = (build_tiny_components(ModelIdentity(Family.SD1)).to(device) if args.model == "tiny"
                  else real_sd1_random(device, dtype))
    model = load_model(path, device, dtype)

    @contextmanager
    def hold(_path: Path):  # noqa: ANN202
        yield model

    upscalers = UpscalerRegistry(path.parent.parent, hold=hold)
    sampler = default_registry().resolve("Euler")
    request = GenerationRequest(prompt="a red circle on a blue background", steps=args.steps, seed=1,
                                width=args.gen_size, height=args.gen_size)
    hires = request.with_changes(enable_hr=True, hr_scale=2.0, hr_upscaler=path.stem, denoising_strength=0.5)
    generate(request, components, sampler)  # warm-up
    plain_times, hires_times, upscale_share = [], [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        generate(request, components, sampler)
        plain_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        output = generate(hires, components, sampler, upscalers=upscalers)
        hires_times.append(time.perf_counter() - started)
        upscale_share.append(output.timings.get("upscale", 0.0))
    plain, total = statistics.median(plain_times), statistics.median(hires_times)
    print(f"part 2: {args.model} SD1, {args.gen_size} px -> {2 * args.gen_size} px, {args.steps} steps, "
          f"denoising 0.5, upscaler {path.stem}")
    print(f"  txt2img {plain:.2f}s, with hires fix {total:.2f}s: the hires pass is {total - plain:.2f}s "
          f"({100 * (total - plain) / total:.0f} % of the hires generation; the model upscale alone "
          f"{statistics.median(upscale_share):.2f}s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="picture side for part 1")
    parser.add_argument("--tile", type=int, default=192)
    parser.add_argument("--overlap", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", choices=["tiny", "sd1"], default="tiny", help="the SD model of part 2")
    parser.add_argument("--gen-size", type=int, default=64, help="first-pass size of part 2")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "ESRGAN").mkdir()
        path = save_realesrgan_x4plus(Path(folder) / "ESRGAN" / "RealESRGAN_x4plus.pth")
        with torch.inference_mode():
            bench_tiles(path, args, device, dtype)
            bench_hires_share(path, args, device, dtype)


if __name__ == "__main__":
    main()
