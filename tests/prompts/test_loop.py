"""Prompt syntax inside the denoise loop: per-step conditioning (editing, img2img, second-order samplers),
AND parts combined as A1111's CFG denoiser does, prompt and negative prompt of different lengths."""

from __future__ import annotations

import pytest
import torch

from modules.core.denoise import StepContext
from modules.core.generate import generate
from modules.prompts.encode import EncodeOptions, PromptEncoder
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest
from tests.core.helpers import SD1, SDXL, sample_image, tiny

REGISTRY = default_registry()


def _run(prompt: str, negative: str = "", sampler: str = "Euler", identity=SD1, **fields) -> list[StepContext]:
    """Generate with a hook that keeps a copy of what each step saw."""
    seen: list[StepContext] = []

    def keep(ctx: StepContext) -> None:
        seen.append(StepContext(ctx.step, ctx.total, ctx.timestep, ctx.sigma, ctx.latents.clone(),
                                ctx.noise_pred.clone(), ctx.noise_pred_cond.clone(),
                                None if ctx.noise_pred_uncond is None else ctx.noise_pred_uncond.clone(),
                                ctx.conditioning, ctx.cfg_scale))

    values = {"prompt": prompt, "negative_prompt": negative, "seed": 5, "steps": 4, "width": 64, "height": 64,
              "cfg_scale": 5.0, **fields}
    generate(GenerationRequest(**values), tiny(identity), REGISTRY.resolve(sampler), hooks=[keep])
    return seen


def _states(text: str, identity=SD1) -> torch.Tensor:
    with torch.inference_mode():
        return PromptEncoder(tiny(identity), EncodeOptions()).encode([text])[0].states


def _eps(latents: torch.Tensor, t: torch.Tensor, text: str) -> torch.Tensor:
    with torch.inference_mode():
        return tiny(SD1).unet(latents, t, encoder_hidden_states=_states(text).unsqueeze(0)).sample


def _which(seen: list[StepContext], options: dict[str, torch.Tensor]) -> list[str]:
    return [next(name for name, states in options.items() if torch.equal(ctx.conditioning.cond[0], states))
            for ctx in seen]


@pytest.mark.slow
def test_prompt_editing_switches_conditioning_inside_the_loop() -> None:
    seen = _run("a [cat:dog:0.5]", steps=10)
    assert _which(seen, {"cat": _states("a cat"), "dog": _states("a dog")}) == ["cat"] * 6 + ["dog"] * 4


@pytest.mark.slow
def test_img2img_schedules_over_the_requested_steps() -> None:
    """A1111 plans the edit over `steps` (10: `[cat:dog:0.2]` ends at 2) and counts from the first step run
    (strength 0.5 runs 6)."""
    seen = _run("a [cat:dog:0.2]", mode="img2img", init_image=sample_image(), denoising_strength=0.5, steps=10)
    assert _which(seen, {"cat": _states("a cat"), "dog": _states("a dog")}) == ["cat"] * 3 + ["dog"] * 3


@pytest.mark.slow
def test_second_order_samplers_count_model_calls() -> None:
    """Heun: 3 steps are 5 model calls, planned as A1111's total_steps = 6 (`[cat:dog:0.5]` ends at call 3)."""
    seen = _run("a [cat:dog:0.5]", sampler="Heun", steps=3)
    assert _which(seen, {"cat": _states("a cat"), "dog": _states("a dog")}) == ["cat"] * 4 + ["dog"]


@pytest.mark.slow
def test_and_parts_are_combined_with_their_weights() -> None:
    seen = _run("a cat AND a dog :0.5", "blurry", sampler="DDIM", steps=2)
    first = seen[0]
    assert first.conditioning.parts == (((0, 1.0), (1, 0.5)),)
    cat, dog, blurry = (_eps(first.latents, first.timestep, text) for text in ("a cat", "a dog", "blurry"))
    expected = blurry + (cat - blurry) * 5.0 + (dog - blurry) * (0.5 * 5.0)
    # The loop runs the three prompts as one batch, `_eps` one at a time: CPU convolutions round a batch slightly
    # differently (~2e-6), and CFG multiplies that by up to 7.5, so 1e-5 was too tight (it failed now and then).
    torch.testing.assert_close(first.noise_pred, expected, rtol=0, atol=5e-5)
    torch.testing.assert_close(first.noise_pred_cond, blurry + (cat - blurry) + 0.5 * (dog - blurry),
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(first.noise_pred_uncond, blurry, rtol=0, atol=1e-5)


def test_and_prompt_runs_the_uncond_pass_even_at_cfg_1() -> None:
    seen = _run("a cat :0.5", "blurry", sampler="DDIM", steps=2, cfg_scale=1.0)
    cat, blurry = (_eps(seen[0].latents, seen[0].timestep, text) for text in ("a cat", "blurry"))
    torch.testing.assert_close(seen[0].noise_pred, blurry + 0.5 * (cat - blurry), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_prompt_and_negative_of_different_lengths() -> None:
    """A1111's default runs them in separate UNet calls; `pad_cond_uncond` pads the negative with empty chunks."""
    long = "cat " * 80
    seen = _run(long, "blurry", sampler="DDIM", steps=2)
    assert seen[0].conditioning.cond.shape[1] == 154 and seen[0].conditioning.uncond.shape[1] == 77
    cond, uncond = (_eps(seen[0].latents, seen[0].timestep, text) for text in (long, "blurry"))
    torch.testing.assert_close(seen[0].noise_pred, uncond + 5.0 * (cond - uncond), rtol=0, atol=1e-5)
    padded = _run(long, "blurry", sampler="DDIM", steps=2, overrides={"pad_cond_uncond": True})
    assert padded[0].conditioning.uncond.shape[1] == 154
    assert not torch.equal(padded[0].noise_pred_uncond, seen[0].noise_pred_uncond)


@pytest.mark.slow
def test_emphasis_option_comes_from_the_job_options() -> None:
    seen = _run("(cat:1.5)", steps=1, overrides={"emphasis": "Ignore"})
    assert torch.equal(seen[0].conditioning.cond[0], _states("cat"))
    weighted = _run("(cat:1.5)", steps=1)
    assert not torch.equal(weighted[0].conditioning.cond[0], _states("cat"))


@pytest.mark.slow
def test_sdxl_long_prompt_and_and_parts_run() -> None:
    seen = _run("cat " * 80 + "AND a dog", "", identity=SDXL, steps=1)
    conditioning = seen[0].conditioning
    assert conditioning.cond.shape == (2, 154, 64) and conditioning.pooled.shape == (2, 32)
    assert conditioning.uncond.shape == (1, 77, 64) and torch.isfinite(seen[0].noise_pred).all()
