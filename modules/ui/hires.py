"""The txt2img tab's "Hires. fix" accordion (A1111 layout): enable checkbox, upscaler, hires steps, denoising
strength, upscale by / resize to, the "from WxH to WxH" line, and the second pass's checkpoint, sampler, schedule
and prompts.

Its widgets feed the request by binder name like every other field (`modules.ui.bind`); the upscaler list is what
the upscaler registry can run (latent modes first, as A1111 lists them).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from modules.core.plan import hires_target
from modules.settings import ComponentConfig
from modules.ui.bind import SAME_CHECKPOINT, SAME_SAMPLER, SAME_SCHEDULER
from modules.ui.common import UiContext
from modules.ui.toprow import checkpoint_choices

_STEPS = ComponentConfig(0, 0, 150, 1)
_DENOISING = ComponentConfig(0.7, 0.0, 1.0, 0.01)
_SCALE = ComponentConfig(2.0, 1.0, 4.0, 0.05)
_RESIZE = ComponentConfig(0, 0, 2048, 8)


@dataclass
class HiresRows:
    enable: gr.Checkbox
    upscaler: gr.Dropdown
    steps: gr.Slider
    denoising: gr.Slider
    scale: gr.Slider
    resize_x: gr.Slider
    resize_y: gr.Slider
    checkpoint: gr.Dropdown
    sampler: gr.Dropdown
    schedule: gr.Dropdown
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    size_text: gr.HTML

    def named(self) -> dict[str, gr.components.Component]:
        return {"enable_hr": self.enable, "hr_upscaler": self.upscaler, "hr_second_pass_steps": self.steps,
                "denoising_strength": self.denoising, "hr_scale": self.scale, "hr_resize_x": self.resize_x,
                "hr_resize_y": self.resize_y, "hr_checkpoint": self.checkpoint, "hr_sampler": self.sampler,
                "hr_scheduler": self.schedule, "hr_prompt": self.prompt, "hr_negative_prompt": self.negative_prompt}


def hires_size_text(enabled: bool, width: int, height: int, scale: float, resize_x: int, resize_y: int) -> str:
    """A1111's line under the checkbox: "from 512x512 to 1024x1024" (empty when off or not computable)."""
    if not enabled:
        return ""
    try:
        target = hires_target(int(width), int(height), float(scale), int(resize_x), int(resize_y))
    except (TypeError, ValueError, ZeroDivisionError):
        return ""
    (up_w, up_h), (cut_x, cut_y) = target.upscale_to, target.truncate
    final = f"{up_w - cut_x * 8}x{up_h - cut_y * 8}"
    return (f"<span class='gray-text'>from <span class='resolution'>{int(width)}x{int(height)}</span> to "
            f"<span class='resolution'>{final}</span></span>")


def build_hires_accordion(ctx: UiContext, tab: str, width: gr.Slider, height: gr.Slider) -> HiresRows:
    """The accordion, in the current layout; the size line follows the first pass's `width`/`height`."""
    upscalers = ctx.app.models.upscalers.names()
    with gr.Accordion("Hires. fix", open=False, elem_id=f"{tab}_hr"):
        with gr.Row():
            enable = gr.Checkbox(label="Enable", value=False, elem_id=f"{tab}_enable_hr", scale=0, min_width=120)
            size_text = gr.HTML("", elem_id=f"{tab}_hr_size_text")
        with gr.Row(elem_id=f"{tab}_hires_fix_row1"):
            upscaler_value = str(ctx.config(f"{tab}/Upscaler", ComponentConfig("Latent")).value)
            upscaler = gr.Dropdown(label="Upscaler", choices=list(upscalers), elem_id=f"{tab}_hr_upscaler",
                                   value=upscaler_value if upscaler_value in upscalers else upscalers[0])
            steps = ctx.slider(tab, "Hires steps", _STEPS)
            denoising = ctx.slider(tab, "Denoising strength", _DENOISING)
        with gr.Row(elem_id=f"{tab}_hires_fix_row2"):
            scale = ctx.slider(tab, "Upscale by", _SCALE)
            resize_x = ctx.slider(tab, "Resize width to", _RESIZE)
            resize_y = ctx.slider(tab, "Resize height to", _RESIZE)
        with gr.Row(elem_id=f"{tab}_hires_fix_row3"):
            checkpoint = gr.Dropdown(label="Hires checkpoint", choices=[SAME_CHECKPOINT, *checkpoint_choices(ctx.app)],
                                     value=SAME_CHECKPOINT, elem_id=f"{tab}_hr_checkpoint")
            sampler = gr.Dropdown(label="Hires sampling method", choices=[SAME_SAMPLER, *ctx.app.samplers.visible()],
                                  value=SAME_SAMPLER, elem_id=f"{tab}_hr_sampler")
            schedule = gr.Dropdown(label="Hires schedule type",
                                   choices=[SAME_SCHEDULER, *ctx.app.samplers.schedule_labels()],
                                   value=SAME_SCHEDULER, elem_id=f"{tab}_hr_scheduler")
        with gr.Row(elem_id=f"{tab}_hires_fix_row4"):
            prompt = gr.Textbox(label="Hires prompt", lines=2, elem_id=f"{tab}_hr_prompt",
                                placeholder="Prompt for hires fix pass.\nLeave empty to use the same prompt as in "
                                            "first pass.")
            negative = gr.Textbox(label="Hires negative prompt", lines=2, elem_id=f"{tab}_hr_negative_prompt",
                                  placeholder="Negative prompt for hires fix pass.\nLeave empty to use the same "
                                              "negative prompt as in first pass.")
    rows = HiresRows(enable, upscaler, steps, denoising, scale, resize_x, resize_y, checkpoint, sampler, schedule,
                     prompt, negative, size_text)
    inputs: list[gr.Checkbox | gr.Slider] = [enable, width, height, scale, resize_x, resize_y]
    for source in inputs:
        source.change(hires_size_text, inputs=inputs, outputs=size_text, show_progress="hidden", queue=False)
    return rows
