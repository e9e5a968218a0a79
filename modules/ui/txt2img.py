"""The txt2img tab: prompts, sampling settings, the Hires. fix accordion, seeds and extension scripts on the left,
results on the right (A1111 layout)."""

from __future__ import annotations

from typing import Any, Final, Mapping

import gradio as gr

from modules.types import GenerationRequest
from modules.ui.bind import request_from_values
from modules.ui.common import UiContext, build_prompt_row, build_sampling_rows, build_seed_rows
from modules.ui.extra_networks import build_extra_networks
from modules.ui.generation import GenerationTab, build_script_area, collect_inputs, wire_generation_tab
from modules.ui.hires import build_hires_accordion
from modules.ui.queue_panel import build_queue_panel
from modules.ui.results import build_result_panel
from modules.ui.upscale_action import wire_upscale_action

TAB: Final = "txt2img"


def txt2img_request(values: Mapping[str, Any], data: Mapping[Any, Any]) -> GenerationRequest:
    """The request of the txt2img tab: every value comes from a bound widget."""
    return request_from_values(values, GenerationRequest(mode="txt2img"))


def build_txt2img_tab(ctx: UiContext, top_inputs: Mapping[str, gr.components.Component]) -> GenerationTab:
    """Create the tab (inside the main `gr.Tabs`) and wire it; `top_inputs` are the checkpoint/VAE/CLIP skip."""
    with gr.Tab("txt2img", id=TAB, elem_id=f"tab_{TAB}"):
        prompt_row = build_prompt_row(ctx, TAB, enqueue=True)
        build_extra_networks(ctx, TAB, prompt_row.prompt)
        with gr.Row(equal_height=False, elem_id=f"{TAB}_extra_row"):
            with gr.Column(scale=1, elem_id=f"{TAB}_settings"):
                sampling = build_sampling_rows(ctx, TAB)
                hires = build_hires_accordion(ctx, TAB, sampling.width, sampling.height)
                seeds = build_seed_rows(ctx, TAB)
                scripts = build_script_area(ctx, TAB)
            with gr.Column(scale=1):
                panel = build_result_panel(TAB, upscale=True)
                queue = build_queue_panel(TAB)
    inputs = collect_inputs(top_inputs, prompt_row.named(), sampling.named(), hires.named(), seeds.named())
    tab = GenerationTab(TAB, prompt_row, sampling, seeds, panel, inputs, txt2img_request, scripts=scripts,
                        queue=queue)
    wire_generation_tab(ctx, tab)
    assert panel.upscale is not None
    wire_upscale_action(ctx, tab, panel.upscale)
    return tab
