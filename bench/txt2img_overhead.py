"""Benchmark: our txt2img core vs a bare diffusers-style loop over the same components.

Prints the median time of each and the ratio (target: our overhead <= 2 %). Both run the same model, sampler
(Euler, uniform schedule), steps, size, CFG and seed; the bare loop is the minimum a diffusers pipeline does:
encode prompts, scale noise, `steps` UNet calls with CFG, scheduler steps, VAE decode.

    .venv/bin/python bench/txt2img_overhead.py                 # tiny SD1 model, 64 px (quick)
    .venv/bin/python bench/txt2img_overhead.py --model sd1 --size 256 --steps 4 --repeat 2
      (real SD 1.x architecture with random weights: realistic per-step cost; on CPU several seconds per step)

Timings vary with machine load: compare the ratio within one run, never absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modules.core.generate import generate  # noqa: E402
from modules.models.components import ComponentSet  # noqa: E402
from modules.models.identity import Family, ModelIdentity  # noqa: E402
from modules.models.tiny import build_tiny_components  # noqa: E402
from modules.samplers.registry import default_registry  # noqa: E402
from modules.types import GenerationRequest  # noqa: E402


def real_sd1_random(device: torch.device, dtype: torch.dtype) -> ComponentSet:
    """Full-size SD 1.x components (bundled configs) with random weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from modules.models.configs import bundled_configs
    from modules.models.loaders import load_tokenizer

    identity = ModelIdentity(Family.SD1)
    configs = bundled_configs(identity)
    torch.manual_seed(0)
    components = ComponentSet(
        identity=identity,
        unet=UNet2DConditionModel.from_config(configs["unet"]),
        vae=AutoencoderKL.from_config(configs["vae"]),
        text_encoders=(CLIPTextModel(CLIPTextConfig.from_dict(configs["text_encoder"])),),
        tokenizers=(load_tokenizer("clip_l"),),
        scheduler_config=configs["scheduler"],
    )
    for module in components.modules():
        module.to(device=device, dtype=dtype).eval().requires_grad_(False)
    components.device, components.dtype, components.vae_dtype = device, dtype, dtype
    return components


@torch.inference_mode()
def bare_loop(components: ComponentSet, request: GenerationRequest, seed: int) -> torch.Tensor:
    """The minimal diffusers txt2img loop (what StableDiffusionPipeline.__call__ does, without its checks)."""
    device, dtype = components.device, components.dtype
    tokenizer, encoder = components.tokenizers[0], components.text_encoders[0]

    def encode(text: str) -> torch.Tensor:
        ids = tokenizer(text, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        return encoder(ids.to(device))[0]

    embeds = torch.cat([encode(request.negative_prompt), encode(request.prompt)])
    sampler = default_registry().resolve(request.sampler, request.schedule)
    scheduler = sampler.build(components.scheduler_config, request.steps, device)
    factor = 2 ** (len(components.vae.config.block_out_channels) - 1)
    shape = (1, 4, request.height // factor, request.width // factor)
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device, dtype)
    latents = latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        uncond, cond = components.unet(model_in, t, encoder_hidden_states=embeds).sample.chunk(2)
        latents = scheduler.step(uncond + request.cfg_scale * (cond - uncond), t, latents).prev_sample
    image = components.vae.decode(latents.to(components.vae_dtype) / components.vae.config.scaling_factor).sample
    return (image / 2 + 0.5).clamp(0, 1)


def timed(fn, repeat: int) -> list[float]:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny", "sd1"], default="tiny")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    if args.model == "tiny":
        components = build_tiny_components(ModelIdentity(Family.SD1)).to(device)
    else:
        components = real_sd1_random(device, dtype)
    request = GenerationRequest(prompt="a red circle on a blue background", negative_prompt="green",
                                sampler="Euler", schedule="Automatic", steps=args.steps, cfg_scale=7.0,
                                seed=1234, width=args.size, height=args.size)
    sampler = default_registry().resolve(request.sampler, request.schedule)

    def ours() -> None:
        generate(request, components, sampler)

    def bare() -> None:
        bare_loop(components, request, 1234)

    ours(), bare()  # warm-up (allocator, kernels)
    ours_times, bare_times = [], []
    for index in range(args.repeat):  # interleave, alternating who goes first, so load and caches affect both alike
        if index % 2:
            bare_times += timed(bare, 1)
            ours_times += timed(ours, 1)
        else:
            ours_times += timed(ours, 1)
            bare_times += timed(bare, 1)
    ours_median, bare_median = statistics.median(ours_times), statistics.median(bare_times)
    print(f"model={args.model} size={args.size} steps={args.steps} device={device} dtype={dtype}")
    print(f"ours  median {ours_median:.3f}s  runs {[round(t, 3) for t in ours_times]}")
    print(f"bare  median {bare_median:.3f}s  runs {[round(t, 3) for t in bare_times]}")
    print(f"ratio ours/bare {ours_median / bare_median:.3f}  (overhead {100 * (ours_median / bare_median - 1):+.1f} %)")


if __name__ == "__main__":
    main()
