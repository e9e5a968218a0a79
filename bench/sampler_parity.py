"""How far each sampler is from A1111: our `generate()` against k-diffusion driven the way A1111 drives it.

For every sampler row with a k-diffusion function (Euler, LMS and Heun run on diffusers schedulers; the others on
our sampler functions, which `tests/samplers/` also assert equal), and its Automatic schedule plus Karras where it
takes it: a tiny SD 1.x model (random weights, 64x64, batch 2, CFG 6), the same seeds; the reference draws A1111's
initial noise per image, builds A1111's sigma list and runs k-diffusion's sampler over a CFG denoiser with
fractional timesteps (DPM2, DPM2 a and DPM++ 3M SDE build it for one step more and drop the next-to-last sigma, as
A1111 does; the SDE samplers use k-diffusion's Brownian-tree noise seeded per image, as A1111 does). Prints the
largest difference of the final latents relative to their largest value. Needs the test references
(`scripts/setup.sh test` installs k-diffusion without its dependencies).

    .venv/bin/python bench/sampler_parity.py [--steps 8]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffusers import DDPMScheduler, StableDiffusionPipeline  # noqa: E402

import modules.core.vae as vae_module  # noqa: E402
from modules.core.generate import generate  # noqa: E402
from modules.models.identity import Family, ModelIdentity  # noqa: E402
from modules.models.tiny import build_tiny_components  # noqa: E402
from modules.samplers.registry import default_registry  # noqa: E402
from modules.samplers.sigma_schedules import schedule_sigmas  # noqa: E402
from modules.types import GenerationRequest  # noqa: E402

PROMPT, NEGATIVE, CFG, SEEDS = "a red cube on a table", "blurry", 6.0, (11, 12)
K_SAMPLERS = {
    "Euler": "sample_euler", "LMS": "sample_lms", "Heun": "sample_heun", "DPM2": "sample_dpm_2",
    "DPM2 a": "sample_dpm_2_ancestral", "DPM++ 2M": "sample_dpmpp_2m", "DPM++ SDE": "sample_dpmpp_sde",
    "DPM++ 2M SDE": "sample_dpmpp_2m_sde", "DPM++ 2M SDE Heun": "sample_dpmpp_2m_sde",
    "DPM++ 3M SDE": "sample_dpmpp_3m_sde",
}
"""A1111's k-diffusion function of each row (UniPC and LCM are A1111's own code, no package)."""
DISCARD_PENULTIMATE = {"DPM2", "DPM2 a", "DPM++ 3M SDE"}
BROWNIAN = {"DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE"}


def _k_diffusion() -> tuple[Any, Any]:
    if "k_diffusion.external" in sys.modules:
        return sys.modules["k_diffusion.sampling"], sys.modules["k_diffusion.external"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or spec.submodule_search_locations is None:
        sys.exit("k-diffusion is not installed: run scripts/setup.sh test")
    package = types.ModuleType("k_diffusion")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault("k_diffusion", package)
    return importlib.import_module("k_diffusion.sampling"), importlib.import_module("k_diffusion.external")


class _CompVis(torch.nn.Module):
    def __init__(self, components: Any) -> None:
        super().__init__()
        self.unet = components.unet
        self.alphas_cumprod = DDPMScheduler.from_config(components.scheduler_config).alphas_cumprod

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, encoder_hidden_states=cond, return_dict=False)[0]


def reference(components: Any, name: str, schedule: str, steps: int) -> torch.Tensor:
    sampling, external = _k_diffusion()
    pipeline = StableDiffusionPipeline(
        vae=components.vae, text_encoder=components.text_encoders[0], tokenizer=components.tokenizers[0],
        unet=components.unet, scheduler=DDPMScheduler.from_config(components.scheduler_config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    cond, uncond = pipeline.encode_prompt(PROMPT, "cpu", 1, True, NEGATIVE)
    model = external.CompVisDenoiser(_CompVis(components), quantize=False)

    def denoiser(x: torch.Tensor, sigma: torch.Tensor, **_: Any) -> torch.Tensor:
        rows = x.shape[0]
        out = model(torch.cat([x, x]), torch.cat([sigma, sigma]),
                    cond=torch.cat([uncond.expand(rows, -1, -1), cond.expand(rows, -1, -1)]))
        unconditional, conditional = out.chunk(2)
        return unconditional + (conditional - unconditional) * CFG

    generators = [torch.Generator().manual_seed(seed) for seed in SEEDS]
    noise = torch.stack([torch.randn((4, 8, 8), generator=g) for g in generators])
    if name in DISCARD_PENULTIMATE:
        sigmas = schedule_sigmas(schedule, model.inner_model.alphas_cumprod, steps + 1)
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    else:
        sigmas = schedule_sigmas(schedule, model.inner_model.alphas_cumprod, steps)
    kwargs: dict[str, Any] = {"disable": True}
    x = noise * sigmas[0]
    if name in BROWNIAN:
        low, high = sigmas[sigmas > 0].min(), sigmas.max()
        kwargs["noise_sampler"] = sampling.BrownianTreeNoiseSampler(x, low, high, seed=list(SEEDS))
        if name == "DPM++ 2M SDE Heun":
            kwargs["solver_type"] = "heun"
    elif "a" in name.split():
        kwargs["noise_sampler"] = lambda *_: torch.stack([torch.randn((4, 8, 8), generator=g) for g in generators])
    with torch.no_grad():
        return getattr(sampling, K_SAMPLERS[name])(denoiser, x, sigmas, **kwargs)


def ours(components: Any, name: str, schedule: str, steps: int) -> torch.Tensor:
    captured: list[torch.Tensor] = []
    original = vae_module.decode_latents

    def capture(vae: Any, latents: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        captured.append(latents.clone())
        return original(vae, latents, dtype)

    vae_module.decode_latents = capture  # type: ignore[assignment]
    try:
        request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, seed=SEEDS[0], steps=steps, width=64,
                                    height=64, cfg_scale=CFG, batch_size=len(SEEDS), sampler=name, schedule=schedule)
        generate(request, components, default_registry().resolve(name, schedule))
    finally:
        vae_module.decode_latents = original  # type: ignore[assignment]
    return captured[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    components = build_tiny_components(ModelIdentity(Family.SD1), seed=0)
    registry = default_registry()
    print(f"{'sampler':<18} {'schedule':<12} {'max |diff| / max |ref|':>24}")
    for name in K_SAMPLERS:
        schedules = [registry.resolve(name).schedule.name]
        if "Karras" in registry.schedules_for(name) and "karras" not in schedules:
            schedules.append("karras")
        for schedule in schedules:
            label = registry.resolve(name, schedule).schedule_label
            mine, theirs = ours(components, name, label, args.steps), reference(components, name, schedule,
                                                                                 args.steps)
            relative = float((mine - theirs).abs().max() / theirs.abs().max())
            print(f"{name:<18} {label:<12} {relative:24.2e}")


if __name__ == "__main__":
    main()
