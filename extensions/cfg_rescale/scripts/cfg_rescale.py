"""CFG Rescale (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed", section 3.4).

High CFG scales over-expose images, badly so for v-prediction models. At every step, after guidance, the guided
prediction is rescaled to the standard deviation of the conditional prediction and mixed back with factor `phi`:

    rescaled = cfg * std(cond) / std(cfg);   cfg' = phi * rescaled + (1 - phi) * cfg

(per image, over channels and pixels). This is diffusers' `guidance_rescale` exactly, so `phi` here gives the same
pictures as `StableDiffusionPipeline(..., guidance_rescale=phi)`. phi = 0 (the default) leaves generation untouched;
0.7 is the paper's suggestion. An always-on script: the slider value arrives as
`request.extension_args["cfg_rescale"]["phi"]` (API: `"alwayson_scripts": {"cfg rescale": {"args": [0.7]}}`), and
images made with phi > 0 carry `CFG Rescale phi: <phi>` in their infotext.
"""

from __future__ import annotations

from typing import Any, Mapping

from modules.extensions.api import (
    AfterImageContext,
    BeforeJobContext,
    ExtensionContext,
    Hook,
    StepContext,
    UiBuilder,
    UserError,
    with_infotext_params,
)

TITLE = "CFG Rescale"
INFOTEXT_KEY = "CFG Rescale phi"


def rescale(noise_cfg: Any, noise_cond: Any, phi: float) -> Any:
    """The guided prediction rescaled towards the conditional prediction's standard deviation (see module doc)."""
    dims = list(range(1, noise_cond.ndim))
    std_cond = noise_cond.std(dim=dims, keepdim=True)
    std_cfg = noise_cfg.std(dim=dims, keepdim=True)
    rescaled = noise_cfg * (std_cond / std_cfg)
    return phi * rescaled + (1.0 - phi) * noise_cfg


def phi_of(args: Mapping[str, Any]) -> float:
    """The requested phi (0 when not sent); UserError outside [0, 1]."""
    try:
        phi = float(args.get("phi", 0.0) or 0.0)
    except (TypeError, ValueError) as exc:
        raise UserError(f"CFG Rescale phi must be a number between 0 and 1, got {args.get('phi')!r}.") from exc
    if not 0.0 <= phi <= 1.0:
        raise UserError(f"CFG Rescale phi must be between 0 and 1, got {phi}.")
    return phi


def check_request(ctx: BeforeJobContext) -> None:
    phi_of(ctx.args)  # refuse a bad value before any work is done


def on_step(ctx: StepContext) -> None:
    phi = phi_of(ctx.args)
    if phi > 0.0 and ctx.noise_pred_uncond is not None:  # no guidance (CFG scale 1): nothing to rescale
        ctx.noise_pred = rescale(ctx.noise_pred, ctx.noise_pred_cond, phi)


def on_image(ctx: AfterImageContext) -> None:
    phi = phi_of(ctx.args)
    if phi > 0.0:
        ctx.infotext = with_infotext_params(ctx.infotext, {INFOTEXT_KEY: phi})


def ui(builder: UiBuilder) -> dict[str, Any]:
    import gradio as gr

    return {"phi": gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="CFG Rescale phi (0 = off)",
                             elem_id=builder.elem_id("phi"))}


def register(ext: ExtensionContext) -> None:
    ext.add_script(TITLE, ui=ui, always_on=True)
    ext.on(Hook.BEFORE_JOB, check_request)
    ext.on(Hook.POST_CFG, on_step)
    ext.on(Hook.AFTER_IMAGE, on_image)
