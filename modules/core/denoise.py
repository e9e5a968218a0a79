"""The denoising loop shared by txt2img, img2img and inpaint: CFG, inpaint blending, hooks, stop checks.

One iteration per scheduler timestep, in the order of diffusers' pipelines (the equivalence tests compare with
them): 1. stop check; 2. this step's text inputs (prompt editing switches them) and the model input (doubled for
CFG, plus the 9-channel inpaint conditioning); 3. the UNet call(s), through the extensions' `UNetHook`s (the
negative prompt's rows left out on the calls A1111's NGMS / early-CFG settings skip: `uncond_skip.py`);
4. CFG, with `AND` parts combined as A1111's CFG denoiser does; 5. step hooks (`StepContext`); 6.
`scheduler.step` with per-image generators; 7. the inpaint blend for 4-channel UNets; 8. progress with the latest
clean-latent estimate. Latents stay float32 between steps whatever the UNet's dtype. Where this differs from A1111
(CFG 1 skips the uncond half, the inpaint blend) is in docs/compat.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import torch
from diffusers import SchedulerMixin, UNet2DConditionModel

from modules.core.conditioning import Conditioning
from modules.core.uncond_skip import UncondSkip


@dataclass
class StepContext:
    """What a step hook sees, once per step after CFG and before `scheduler.step`.

    Hooks may assign `noise_pred` (the guided prediction the scheduler will use) or `latents`; every other field
    is information only. `noise_pred_uncond` is None when there is no uncond pass (cfg_scale == 1); on a step that
    skips it (`UncondSkip`) it is the prompt's prediction and `cfg_scale` is 1, as A1111's callbacks see them.
    `conditioning` is the one used at this step. With `AND` parts, `noise_pred_cond` is their combination
    `eps_uncond + sum_i w_i (eps_i - eps_uncond)`, so `noise_pred = uncond + cfg_scale * (cond - uncond)` holds.
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
class UNetInputs:
    """The arguments of one UNet call, named as `UNet2DConditionModel.forward` names them. Residuals that are None
    are not passed (ControlNet adds `down_block_additional_residuals` / `mid_block_additional_residual`,
    T2I-Adapter `down_intrablock_additional_residuals`)."""

    sample: torch.Tensor
    timestep: torch.Tensor
    encoder_hidden_states: torch.Tensor
    added_cond_kwargs: dict[str, torch.Tensor] | None = None
    down_block_additional_residuals: tuple[torch.Tensor, ...] | None = None
    mid_block_additional_residual: torch.Tensor | None = None
    down_intrablock_additional_residuals: tuple[torch.Tensor, ...] | None = None


@dataclass(frozen=True)
class UNetStep:
    """Where a UNet call happens: the step, the model, and what its rows are (`rows`: image index in the batch of
    each row; the first `uncond_rows` rows are the negative prompt's)."""

    step: int
    total: int
    sigma: float
    unet: UNet2DConditionModel
    rows: torch.Tensor
    uncond_rows: int
    refiner: bool = False
    """The call is the SDXL refiner's (the job's second model, from the switch step on)."""


UNetFunction = Callable[[UNetInputs], torch.Tensor]
UNetHook = Callable[[UNetStep, UNetInputs, UNetFunction], torch.Tensor]
"""Wraps one UNet call: `hook(step, inputs, call_next)` returns the output of `call_next(inputs)` (the UNet, or the
next hook) for the inputs it chooses, or a tensor of that shape. The first hook is the outermost."""


@dataclass(frozen=True)
class UNetCall:
    """One UNet evaluation of a step: the latents rows it takes (`rows`: image index of each row; the first
    `uncond_rows` rows use the negative prompt) and the text inputs of those rows, already on the UNet's device and
    dtype."""

    rows: torch.Tensor
    encoder_states: torch.Tensor
    added_cond: dict[str, torch.Tensor] | None = None
    uncond_rows: int = 0


@dataclass(frozen=True)
class TextInputs:
    """The UNet's text inputs at one step. The calls' outputs, concatenated in order, are `[uncond x B, cond x N]`
    when `guided` (N = one row per image, or per AND part), `[cond x B]` otherwise."""

    conditioning: Conditioning
    calls: tuple[UNetCall, ...]
    guided: bool


@dataclass
class UNetPass:
    """One model's inputs: the base model, or the refiner from the switch step on.

    `text(step)` gives the text inputs of a step (the same object for as long as the prompt schedule selects the
    same embeddings); `image_cond` is the (B, 5, h, w) conditioning of a 9-channel inpainting UNet, else None.
    """

    unet: UNet2DConditionModel
    text: Callable[[int], TextInputs]
    image_cond: torch.Tensor | None = None
    dtype: torch.dtype = field(init=False)
    """The UNet's compute dtype, read once: diffusers' `unet.dtype` walks every submodule (~1.5 ms on SD 1.x)."""

    def __post_init__(self) -> None:
        self.dtype = self.unet.dtype


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
    unet_hooks: Sequence[UNetHook] = ()
    should_stop: Callable[[], bool] = lambda: False
    on_step: Callable[[int, int, torch.Tensor], None] | None = None
    uncond_skip: UncondSkip | None = None


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
    sigma_of = getattr(scheduler, "sigma_of", None)  # SigmaScheduler: the exact sigma of a fractional timestep
    if sigma_of is not None:
        return float(sigma_of(timestep))
    alphas = getattr(scheduler, "alphas_cumprod", None)  # scheduler capability, not model duck typing
    if alphas is None:
        return float("nan")
    alpha = float(alphas[int(timestep)])
    return ((1.0 - alpha) / alpha) ** 0.5


def call_unet(unet: UNet2DConditionModel, inputs: UNetInputs) -> torch.Tensor:
    """The UNet's output for `inputs` (in the UNet's dtype)."""
    residuals = {
        name: value for name, value in (
            ("down_block_additional_residuals", inputs.down_block_additional_residuals),
            ("mid_block_additional_residual", inputs.mid_block_additional_residual),
            ("down_intrablock_additional_residuals", inputs.down_intrablock_additional_residuals),
        ) if value is not None
    }
    return unet(
        inputs.sample,
        inputs.timestep,
        encoder_hidden_states=inputs.encoder_hidden_states,
        added_cond_kwargs=inputs.added_cond_kwargs,
        **residuals,
        return_dict=False,
    )[0]


def _hooked(hook: UNetHook, step: UNetStep, inner: UNetFunction) -> UNetFunction:
    return lambda inputs: hook(step, inputs, inner)


def _unet(loop: LoopInputs, unet_pass: UNetPass, scaled: torch.Tensor, call: UNetCall, index: int,
          t: torch.Tensor) -> torch.Tensor:
    model_input = scaled[call.rows]
    if unet_pass.image_cond is not None:
        model_input = torch.cat([model_input, unet_pass.image_cond[call.rows]], dim=1)
    unet = unet_pass.unet
    inputs = UNetInputs(model_input.to(unet_pass.dtype), t, call.encoder_states, call.added_cond)
    run: UNetFunction = partial(call_unet, unet)
    if loop.unet_hooks:
        step = UNetStep(index, len(loop.timesteps), _sigma(loop.scheduler, t), unet, call.rows, call.uncond_rows,
                        refiner=unet_pass is not loop.passes[0][1])
        for hook in reversed(loop.unet_hooks):
            run = _hooked(hook, step, run)
    return run(inputs).float()


def _predict(loop: LoopInputs, unet_pass: UNetPass, text: TextInputs, index: int,
             t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Steps 2-3: (eps of the cond rows, eps_uncond or None) for the current latents."""
    scaled = loop.scheduler.scale_model_input(loop.latents, t)
    outputs = [_unet(loop, unet_pass, scaled, call, index, t) for call in text.calls]
    output = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
    if not text.guided:
        return output, None
    batch = loop.latents.shape[0]
    return output[batch:], output[:batch]


def _cfg_scale(loop: LoopInputs) -> float:
    """The guidance scale in force: CFG++ samplers take one in 0..1 (A1111 divides the UI's by 12.5)."""
    return loop.cfg_scale * getattr(loop.scheduler, "cfg_scale_multiplier", 1.0)


def _guide(text: TextInputs, cond: torch.Tensor, uncond: torch.Tensor | None,
           scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 4: (guided eps, eps_cond per image); AND parts are combined with their weights (A1111)."""
    if uncond is None:
        return cond, cond
    parts = text.conditioning.parts
    if parts is None:
        return uncond + scale * (cond - uncond), cond
    guided, combined = uncond.clone(), uncond.clone()
    for image, image_parts in enumerate(parts):
        for row, weight in image_parts:
            delta = cond[row] - uncond[image]
            guided[image] += delta * (weight * scale)
            combined[image] += delta * weight
    return guided, combined


def _skips_uncond(loop: LoopInputs, text: TextInputs, index: int, t: torch.Tensor) -> bool:
    skip = loop.uncond_skip
    if skip is None or not skip.active or not text.guided:
        return False
    return skip.skips(index, len(loop.timesteps), _sigma(loop.scheduler, t), float(t))


def _without_uncond(text: TextInputs) -> TextInputs:
    """The step's text inputs with the negative prompt's rows left out (unguided)."""
    calls = []
    for call in text.calls:
        drop = call.uncond_rows
        if drop == len(call.rows):
            continue
        added = None if call.added_cond is None else {key: value[drop:] for key, value in call.added_cond.items()}
        calls.append(UNetCall(call.rows[drop:], call.encoder_states[drop:], added))
    return TextInputs(text.conditioning, tuple(calls), guided=False)


def _stand_in_uncond(text: TextInputs, cond: torch.Tensor) -> torch.Tensor:
    """What a skipped negative pass is replaced with: each image's (first part's) prompt prediction."""
    parts = text.conditioning.parts
    if parts is None:
        return cond
    return torch.stack([cond[image_parts[0][0]] for image_parts in parts])


def _predict_guided(loop: LoopInputs, unet_pass: UNetPass, text: TextInputs, index: int,
                    t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, float]:
    """Steps 2-4: (guided eps, eps_cond per image, eps_uncond or None, the guidance scale used)."""
    if _skips_uncond(loop, text, index, t):
        cond, _ = _predict(loop, unet_pass, _without_uncond(text), index, t)
        uncond = _stand_in_uncond(text, cond)
        noise_pred, combined = _guide(text, cond, uncond, 1.0)
        return noise_pred, combined, uncond, 1.0
    cond, uncond_or_none = _predict(loop, unet_pass, text, index, t)
    scale = _cfg_scale(loop)
    noise_pred, combined = _guide(text, cond, uncond_or_none, scale)
    return noise_pred, combined, uncond_or_none, scale


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
    text = unet_pass.text(index)
    # 2-4. UNet (uncond and cond in one call when their lengths allow; uncond skipped where A1111 would), then
    # classifier-free guidance (with AND parts: their weighted sum)
    noise_pred, cond, uncond, scale = _predict_guided(loop, unet_pass, text, index, t)
    # 5. hooks
    if loop.hooks:
        ctx = StepContext(index, len(loop.timesteps), t, _sigma(loop.scheduler, t), loop.latents, noise_pred,
                          cond, uncond, text.conditioning, scale)
        for hook in loop.hooks:
            hook(ctx)
        noise_pred, loop.latents = ctx.noise_pred, ctx.latents
    # 6. scheduler step
    kwargs = loop.step_kwargs
    if getattr(loop.scheduler, "needs_uncond", False):  # CFG++ steps along the unconditional prediction
        kwargs = {**kwargs, "noise_pred_uncond": uncond}
    output = loop.scheduler.step(noise_pred, t, loop.latents, **kwargs, return_dict=True)
    loop.latents = output.prev_sample
    if getattr(loop.scheduler, "extends_timesteps", False):  # DPM adaptive: the step planned the next evaluation
        loop.timesteps = loop.scheduler.timesteps
    denoised = output.get("pred_original_sample")
    # 7. inpaint blend (4-channel UNets only; 9-channel ones see the mask through their input)
    if loop.blend is not None and unet_pass.image_cond is None:
        loop.latents = _blend(loop, index)
    return loop.latents if denoised is None else denoised


def run_denoise(loop: LoopInputs) -> LoopResult:
    """Run the loop over `loop.timesteps` (which an adaptive sampler extends as it goes); a stop request ends it
    before the next step."""
    denoised = loop.latents
    index = 0
    while index < len(loop.timesteps):
        # 1. stop check
        if loop.should_stop():
            return LoopResult(loop.latents, denoised, index, stopped=True)
        denoised = _step(loop, index, loop.timesteps[index])
        index += 1
        # 8. progress
        if loop.on_step is not None:
            loop.on_step(index, len(loop.timesteps), denoised)
    return LoopResult(loop.latents, denoised, index, stopped=False)
