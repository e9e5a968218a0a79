"""ControlNet cost per step: txt2img with 0, 1 and 2 ControlNet units through our core (the built-in extension's
UNet hook), and diffusers' StableDiffusionControlNetPipeline with 1 unit on the same weights, seed and size.

    .venv/bin/python bench/controlnet.py                       # tiny SD 1.x model, 64 px (quick)
    .venv/bin/python bench/controlnet.py --model sd1 --size 256 --steps 4 --repeat 2
      (full-size SD 1.x architecture and a ControlNet made from its UNet, random weights; seconds per step on CPU)

Prints the median seconds per step of each and the ratio of ours with 1 unit to diffusers' pipeline with 1 unit.
Timings vary with machine load: compare within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from modules.core.generate import generate  # noqa: E402
from modules.extensions.host import BUILTIN_ROOT, ExtensionHost  # noqa: E402
from modules.extensions.loader import ExtensionRoot  # noqa: E402
from modules.models.identity import Family, ModelIdentity  # noqa: E402
from modules.models.tiny import build_tiny_components  # noqa: E402
from modules.samplers.registry import default_registry  # noqa: E402
from modules.types import GenerationRequest  # noqa: E402

PROMPT, NEGATIVE = "a red cube on a table", "blurry"


def _controlnet(unet: Any) -> Any:
    from diffusers import ControlNetModel

    net = ControlNetModel.from_unet(unet)
    with torch.no_grad():
        for module in [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]:
            module.weight.normal_(0, 0.02)
    return net.to(unet.device, unet.dtype).eval().requires_grad_(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("tiny", "sd1"), default="tiny")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from diffusers import StableDiffusionControlNetPipeline
    from PIL import Image
    from safetensors.torch import save_file

    if args.model == "sd1":
        from txt2img_overhead import real_sd1_random

        components = real_sd1_random(torch.device("cpu"), torch.float32)
    else:
        components = build_tiny_components(ModelIdentity(Family.SD1), seed=0)
    net = _controlnet(components.unet)
    data = Path(tempfile.mkdtemp())
    (data / "models" / "ControlNet").mkdir(parents=True)
    save_file({key: value.contiguous() for key, value in net.state_dict().items()},
              str(data / "models" / "ControlNet" / "bench.safetensors"))
    host = ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)], data_dir=data)
    host.load()
    from fastapi import FastAPI

    host.hooks.app_started(FastAPI())
    control = Image.new("RGB", (args.size, args.size), "white")
    sampler = default_registry().resolve("Euler")

    def ours(units: int) -> None:
        unit = {"enabled": True, "model": "bench", "image": control}
        request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, seed=1, steps=args.steps,
                                    width=args.size, height=args.size, cfg_scale=7.0, sampler="Euler",
                                    extension_args={"controlnet": {"units": [dict(unit) for _ in range(units)]}})
        request = host.hooks.before_job(request, {})
        generate(request, components, sampler, unet_hooks=host.hooks.unet_hooks(request))

    pipeline = StableDiffusionControlNetPipeline(
        vae=components.vae, text_encoder=components.text_encoders[0], tokenizer=components.tokenizers[0],
        unet=components.unet, controlnet=net, scheduler=sampler.scheduler_cls.from_config(
            sampler.scheduler_config(components.scheduler_config)),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)

    def theirs() -> None:
        pipeline(PROMPT, negative_prompt=NEGATIVE, image=control, height=args.size, width=args.size,
                 num_inference_steps=args.steps, guidance_scale=7.0, generator=torch.Generator().manual_seed(1))

    runs = {"ours, 0 units": lambda: ours(0), "ours, 1 unit": lambda: ours(1), "ours, 2 units": lambda: ours(2),
            "diffusers pipeline, 1 unit": theirs}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):  # alternate, so load changes hit every row alike
        for name, run in runs.items():
            started = time.perf_counter()
            with torch.inference_mode():
                run()
            times[name].append((time.perf_counter() - started) / args.steps)
    print(f"{args.model}, {args.size}px, {args.steps} steps, median of {args.repeat} (seconds per step):")
    for name, values in times.items():
        print(f"  {name:<28} {statistics.median(values):8.3f}")
    ratio = statistics.median(times["ours, 1 unit"]) / statistics.median(times["diffusers pipeline, 1 unit"])
    print(f"  ours / diffusers with 1 unit: {ratio:.3f}")


if __name__ == "__main__":
    main()
