"""The denoising loop shared by txt2img, img2img and inpaint: CFG, inpaint blending, step hooks, stop checks.

One iteration per scheduler timestep, in the order of diffusers' pipelines (so the results are equal to them):

1. stop check (interrupt / skip): the loop ends before the next UNet call;
2. model input: latents (doubled for CFG), `scheduler.scale_model_input`, plus the 9-channel inpaint
   conditioning (mask + masked-image latents) for inpainting UNets;
3. one UNet call for the uncond and cond halves together; skipped uncond half when `cfg_scale == 1` (the CFG
   formula is then the identity; diffusers skips it for every scale <= 1, A1111 never skips);
4. CFG: `eps = eps_uncond + s * (eps_cond - eps_uncond)` (the negative prompt is the uncond half);
5. step hooks (`StepContext`), which may replace `noise_pred` or `latents`;
6. `scheduler.step` (with per-image generators for ancestral/SDE samplers);
7. inpaint blend for 4-channel UNets: the unmasked area is reset to the init latents noised to the next
   timestep (the final step uses the clean init latents), diffusers' inpaint pipeline rule. A1111 instead blends
   the denoised estimate inside its CFG denoiser; both keep the unmasked area on the init image, and the
   diffusers form needs no access to a sampler's internal x0, which diffusers schedulers do not all expose;
8. progress callback with the latest estimate of the clean latents (for previews and interrupts).

Latents stay float32 between steps (A1111 samples in fp32 under autocast): the UNet gets its own dtype and its
output is cast back, so an fp16 UNet does not degrade the scheduler arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from diffusers import SchedulerMixin, UNet2DConditionModel

from modules.core.conditioning import Conditioning


@dataclass
class StepContext:
    """What a step hook sees, once per step after CFG and before `scheduler.step`.

    Hooks may assign `noise_pred` (the guided prediction the scheduler will use) or `latents`; every other field
    is information only. `noise_pred_uncond` is None when the uncond pass was skipped (cfg_scale == 1).
    """

    step: int
    total: int
    timestep: torch.Tensor
    sigma: float
    latents: torch.Tensor
    noise_pred: torch.Tensor
    noise_pred_cond: torch.Tensor
    noise_pred_uncond: torch.Tensor | None
    conditioning: Conditioning
    cfg_scale: float


StepHook = Callable[[StepContext], None]


@dataclass
class UNetPass:
    """One model's inputs: the base model, or the refiner from the switch step on.

    `encoder_states` and `added_cond` are already batched as the UNet gets them ([uncond x B, cond x B] with
    CFG); `image_cond` is the (B, 5, h, w) conditioning of a 9-channel inpainting UNet, None otherwise.
    """

    unet: UNet2DConditionModel
    conditioning: Conditioning
    encoder_states: torch.Tensor
    added_cond: dict[str, torch.Tensor] | None = None
    image_cond: torch.Tensor | None = None


@dataclass
class InpaintBlend:
    """Per-step blend of 4-channel inpainting: `repaint` is 1 where new content is generated."""

    init_latents: torch.Tensor
    noise: torch.Tensor
    repaint: torch.Tensor


@dataclass
class LoopInputs:
    """Everything the loop needs. `passes` maps the first step index of each UNet pass (0 for the base)."""

    scheduler: SchedulerMixin
    timesteps: torch.Tensor
    latents: torch.Tensor
    cfg_scale: float
    passes: list[tuple[int, UNetPass]]
    step_kwargs: dict[str, Any] = field(default_factory=dict)
    blend: InpaintBlend | None = None
    hooks: Sequence[StepHook] = ()
    should_stop: Callable[[], bool] = lambda: False
    on_step: Callable[[int, int, torch.Tensor], None] | None = None


@dataclass
class LoopResult:
    """Final latents, the latest clean-latent estimate, how many steps ran, and whether a stop ended the loop."""

    latents: torch.Tensor
    denoised: torch.Tensor
    steps_done: int
    stopped: bool


def pass_for(passes: list[tuple[int, UNetPass]], index: int) -> UNetPass:
    """The pass that runs step `index`: the last one whose first step is at or before it."""
    current = passes[0][1]
    for start, unet_pass in passes:
        if index >= start:
            current = unet_pass
    return current


def _sigma(scheduler: SchedulerMixin, timestep: torch.Tensor) -> float:
    """k-diffusion sigma of a timestep, sqrt((1 - alpha_bar) / alpha_bar); NaN for schedulers without alphas."""
    alphas = getattr(scheduler, "alphas_cumprod", None)  # scheduler capability, not model duck typing
    if alphas is None:
        return float("nan")
    alpha = float(alphas[int(timestep)])
    return ((1.0 - alpha) / alpha) ** 0.5


def _predict(loop: LoopInputs, unet_pass: UNetPass, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Steps 2-3: (eps_cond, eps_uncond or None) for the current latents."""
    guided = loop.cfg_scale != 1.0
    model_input = torch.cat([loop.latents] * 2) if guided else loop.latents
    model_input = loop.scheduler.scale_model_input(model_input, t)
    if unet_pass.image_cond is not None:
        image_cond = torch.cat([unet_pass.image_cond] * 2) if guided else unet_pass.image_cond
        model_input = torch.cat([model_input, image_cond], dim=1)
    unet = unet_pass.unet
    output = unet(
        model_input.to(unet.dtype),
        t,
        encoder_hidden_states=unet_pass.encoder_states,
        added_cond_kwargs=unet_pass.added_cond,
        return_dict=False,
    )[0].float()
    if not guided:
        return output, None
    uncond, cond = output.chunk(2)
    return cond, uncond


def _blend(loop: LoopInputs, index: int) -> torch.Tensor:
    """Step 7: keep the unmasked area on the init latents noised to the next timestep."""
    blend = loop.blend
    assert blend is not None
    proper = blend.init_latents
    if index < len(loop.timesteps) - 1:
        proper = loop.scheduler.add_noise(proper, blend.noise, loop.timesteps[index + 1:index + 2])
    return (1 - blend.repaint) * proper + blend.repaint * loop.latents


def _step(loop: LoopInputs, index: int, t: torch.Tensor) -> torch.Tensor:
    """Steps 2-7 of one timestep; updates `loop.latents` and returns the clean-latent estimate."""
    unet_pass = pass_for(loop.passes, index)
    # 2-3. UNet (uncond and cond in one call)
    cond, uncond = _predict(loop, unet_pass, t)
    # 4. classifier-free guidance
    noise_pred = cond if uncond is None else uncond + loop.cfg_scale * (cond - uncond)
    # 5. hooks
    if loop.hooks:
        ctx = StepContext(index, len(loop.timesteps), t, _sigma(loop.scheduler, t), loop.latents, noise_pred,
                          cond, uncond, unet_pass.conditioning, loop.cfg_scale)
        for hook in loop.hooks:
            hook(ctx)
        noise_pred, loop.latents = ctx.noise_pred, ctx.latents
    # 6. scheduler step
    output = loop.scheduler.step(noise_pred, t, loop.latents, **loop.step_kwargs, return_dict=True)
    loop.latents = output.prev_sample
    denoised = output.get("pred_original_sample")
    # 7. inpaint blend (4-channel UNets only; 9-channel ones see the mask through their input)
    if loop.blend is not None and unet_pass.image_cond is None:
        loop.latents = _blend(loop, index)
    return loop.latents if denoised is None else denoised


def run_denoise(loop: LoopInputs) -> LoopResult:
    """Run the loop over `loop.timesteps`; a stop request ends it before the next step."""
    total = len(loop.timesteps)
    denoised = loop.latents
    for index, t in enumerate(loop.timesteps):
        # 1. stop check
        if loop.should_stop():
            return LoopResult(loop.latents, denoised, index, stopped=True)
        denoised = _step(loop, index, t)
        # 8. progress
        if loop.on_step is not None:
            loop.on_step(index + 1, total, denoised)
    return LoopResult(loop.latents, denoised, total, stopped=False)
