"""Widgets shared by the generation tabs: prompt boxes with token counters, sampler, size, batch, CFG and seed rows.

Each builder creates its widgets inside the current Gradio layout context, wires the purely local events (token
counting, dice/recycle buttons, width/height swap, schedule choices that follow the sampler) and returns a small
dataclass; `named()` gives the widgets that feed a `GenerationRequest`, keyed by their binder names
(`modules.ui.bind.BINDINGS`). Defaults and slider bounds come from ui-config.json through `UiContext`, with
A1111's component ids ("txt2img/Sampling steps").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image

from modules.errors import UnknownSampler
from modules.settings import ComponentConfig, default_ui_components
from modules.ui.style_editor import EDIT_STYLES_ICON, StyleEditor, build_style_editor
from modules.ui.tokens import TokenCounter

if TYPE_CHECKING:
    from modules.app import App

log = logging.getLogger(__name__)

RANDOM_ICON = "\U0001f3b2\ufe0f"  # 🎲
REUSE_ICON = "\u267b\ufe0f"  # ♻️
SWAP_ICON = "\u21c5"  # ⇅
PASTE_ICON = "\u2199\ufe0f"  # ↙️
CLEAR_ICON = "\U0001f5d1\ufe0f"  # 🗑️
APPLY_STYLE_ICON = "\U0001f4cb"  # 📋
REFRESH_ICON = "\U0001f504"  # 🔄
DETECT_SIZE_ICON = "\U0001f4d0"  # 📐


@dataclass
class UiContext:
    """What every builder needs: the App and the UI's own helpers (no module-level state)."""

    app: App
    tokens: TokenCounter
    _defaults: dict[str, ComponentConfig] = field(default_factory=default_ui_components)

    def config(self, component_id: str, default: ComponentConfig | None = None) -> ComponentConfig:
        """ui-config.json value and bounds of "tab/label" (A1111 ids), over our built-in default."""
        fallback = default if default is not None else self._defaults[component_id]
        return self.app.ui_config.component(component_id, fallback)

    def slider(self, tab: str, label: str, default: ComponentConfig | None = None, **kwargs: Any) -> gr.Slider:
        cfg = self.config(f"{tab}/{label}", default)
        low = cfg.minimum if cfg.minimum is not None else 0  # Gradio's own defaults for a slider without bounds
        high = cfg.maximum if cfg.maximum is not None else 100
        return gr.Slider(label=label, value=cfg.value, minimum=low, maximum=high, step=cfg.step,
                         elem_id=_elem_id(tab, label), **kwargs)


def _elem_id(tab: str, label: str) -> str:
    return f"{tab}_{''.join(c if c.isalnum() else '_' for c in label.lower())}".strip("_")


TOOLTIPS: dict[str, str] = {
    RANDOM_ICON: "Set the seed to -1: a new random number is used every time",
    REUSE_ICON: "Reuse the seed of the selected (or first) image of the last generation",
    SWAP_ICON: "Swap width and height",
    PASTE_ICON: "Read generation parameters from the prompt box (or from the last generation when it is empty) "
                "into the fields",
    CLEAR_ICON: "Clear the prompt and the negative prompt",
    APPLY_STYLE_ICON: "Write the selected styles into the prompts and clear the selection",
    REFRESH_ICON: "Refresh the lists",
    DETECT_SIZE_ICON: "Take width and height from the image (rounded to multiples of 8)",
}
"""Hover texts of the icon buttons, keyed by icon; set as `title` attributes by the page script (layout.py)."""


def tool_button(icon: str, elem_id: str | None = None, visible: bool = True) -> gr.Button:
    """A small square icon button (A1111's ToolButton); its hover text comes from `TOOLTIPS`."""
    return gr.Button(icon, elem_id=elem_id, elem_classes=["tool"], size="sm", min_width=40, scale=0,
                     variant="secondary", visible=visible)


# --- prompts ------------------------------------------------------------------------------------------------------


@dataclass
class PromptRow:
    """Prompt/negative prompt with token counters, the Generate/Interrupt/Skip buttons and the style tools."""

    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    prompt_tokens: gr.HTML
    negative_tokens: gr.HTML
    generate: gr.Button
    interrupt: gr.Button
    skip: gr.Button
    paste: gr.Button
    clear: gr.Button
    styles: gr.Dropdown
    apply_styles: gr.Button
    override_settings: gr.Dropdown
    enqueue: gr.Button | None = None
    """Queue the job and return at once (`modules.ui.queue_panel`); None for rows without it."""
    style_editor: "StyleEditor | None" = None
    """The 🖌️ box that creates, edits and deletes styles (`modules.ui.style_editor`)."""

    def named(self) -> dict[str, gr.components.Component]:
        return {"prompt": self.prompt, "negative_prompt": self.negative_prompt, "styles": self.styles,
                "override_settings": self.override_settings}


def _counter_html(label: str, visible: bool = True) -> str:
    return f"<span class='token-count'>{label}</span>" if visible else ""


def _prompt_box(ctx: UiContext, tab: str, label: str, negative: bool) -> tuple[gr.Textbox, gr.HTML]:
    key = "negative_prompt" if negative else "prompt"
    cfg = ctx.config(f"{tab}/{label}")
    with gr.Column(elem_classes=["prompt-box"]):
        counter = gr.HTML(_counter_html("0/75"), elem_id=f"{tab}_{key}_token_counter",
                          elem_classes=["token-counter"], padding=False)
        box = gr.Textbox(label=label, value=cfg.value, lines=3, max_lines=20, elem_id=f"{tab}_{key}",
                         placeholder=f"{label} (Ctrl+Enter to generate)", show_label=False)
    return box, counter


def build_prompt_row(ctx: UiContext, tab: str, enqueue: bool = False) -> PromptRow:
    """The top row of a generation tab: prompts with token counters, run buttons (with `enqueue`, an Enqueue
    button beside Generate), paste and style tools."""
    with gr.Row(elem_id=f"{tab}_toprow", equal_height=False):
        with gr.Column(scale=6, min_width=300):
            prompt, prompt_tokens = _prompt_box(ctx, tab, "Prompt", negative=False)
            negative, negative_tokens = _prompt_box(ctx, tab, "Negative prompt", negative=True)
        with gr.Column(scale=1, min_width=200, elem_classes=["actions-column"]):
            with gr.Row():
                interrupt = gr.Button("Interrupt", elem_id=f"{tab}_interrupt", visible=False, variant="stop")
                skip = gr.Button("Skip", elem_id=f"{tab}_skip", visible=False)
                generate = gr.Button("Generate", elem_id=f"{tab}_generate", variant="primary", size="lg", scale=3)
                enqueue_button = gr.Button("Enqueue", elem_id=f"{tab}_enqueue", size="lg", scale=1, min_width=90,
                                           elem_classes=["enqueue-button"]) if enqueue else None
            names = ctx.app.styles.names()
            with gr.Row(elem_classes=["tools-row"]):
                paste = tool_button(PASTE_ICON, f"{tab}_paste")
                clear = tool_button(CLEAR_ICON, f"{tab}_clear_prompt")
                apply_styles = tool_button(APPLY_STYLE_ICON, f"{tab}_apply_styles", visible=bool(names))
                edit_styles = tool_button(EDIT_STYLES_ICON, f"{tab}_styles_edit_button")
            styles = gr.Dropdown(label="Styles", choices=names, value=[], multiselect=True, elem_id=f"{tab}_styles",
                                 visible=bool(names), show_label=True, filterable=True)
            # A1111's "Override settings": settings a pasted infotext states (RNG, ENSD, ...), for this tab's jobs
            override_settings = gr.Dropdown(label="Override settings", choices=[], value=[], multiselect=True,
                                            allow_custom_value=True, visible=False,
                                            elem_id=f"{tab}_override_settings")
    editor = build_style_editor(tab, names, edit_styles)
    row = PromptRow(prompt, negative, prompt_tokens, negative_tokens, generate, interrupt, skip, paste, clear,
                    styles, apply_styles, override_settings, enqueue_button, editor)
    _wire_prompt_row(ctx, row)
    return row


def _wire_prompt_row(ctx: UiContext, row: PromptRow) -> None:
    def count(text: str, composable: bool) -> str:
        if ctx.app.settings.get()["disable_token_counters"]:
            return _counter_html("", visible=False)
        return _counter_html(ctx.tokens.label(text, composable=composable))

    row.prompt.change(lambda text: count(text, True), inputs=row.prompt, outputs=row.prompt_tokens,
                      show_progress="hidden", trigger_mode="always_last", queue=False)
    row.negative_prompt.change(lambda text: count(text, False), inputs=row.negative_prompt,
                               outputs=row.negative_tokens, show_progress="hidden", trigger_mode="always_last",
                               queue=False)
    row.clear.click(lambda: ("", ""), outputs=[row.prompt, row.negative_prompt], show_progress="hidden", queue=False)

    def apply_styles(prompt: str, negative: str, names: list[str]) -> tuple[str, str, list[str]]:
        new_prompt, new_negative = ctx.app.styles.apply(prompt or "", negative or "", names or [])
        return new_prompt, new_negative, []

    row.apply_styles.click(apply_styles, inputs=[row.prompt, row.negative_prompt, row.styles],
                           outputs=[row.prompt, row.negative_prompt, row.styles], show_progress="hidden")


# --- sampler, size, batch, CFG ------------------------------------------------------------------------------------


@dataclass
class SamplingRows:
    sampler: gr.Dropdown
    schedule: gr.Dropdown
    steps: gr.Slider
    width: gr.Slider
    height: gr.Slider
    swap: gr.Button
    batch_count: gr.Slider
    batch_size: gr.Slider
    cfg_scale: gr.Slider
    detect_size: gr.Button | None = None
    resize_by: "ResizeBy | None" = None
    """img2img's "Resize by" tab beside "Resize to" (the width and height sliders)."""

    def named(self) -> dict[str, gr.components.Component]:
        return {"sampler": self.sampler, "schedule": self.schedule, "steps": self.steps, "width": self.width,
                "height": self.height, "batch_count": self.batch_count, "batch_size": self.batch_size,
                "cfg_scale": self.cfg_scale}


def schedule_choices(app: App, sampler: str) -> list[str]:
    """Schedule types valid for `sampler` ("Automatic" first); all labels when the sampler is unknown."""
    try:
        return app.samplers.schedules_for(sampler)
    except UnknownSampler:
        return app.samplers.schedule_labels()


def _sampler_default(app: App, wanted: str) -> str:
    visible = app.samplers.visible()
    return wanted if wanted in visible else (visible[0] if visible else wanted)


def build_sampler_row(ctx: UiContext, tab: str) -> tuple[gr.Dropdown, gr.Dropdown, gr.Slider]:
    with gr.Row(elem_id=f"{tab}_sampling_row"):
        sampler_value = _sampler_default(ctx.app, str(ctx.config(f"{tab}/Sampling method").value))
        sampler = gr.Dropdown(label="Sampling method", choices=ctx.app.samplers.visible(), value=sampler_value,
                              elem_id=f"{tab}_sampling")
        schedules = schedule_choices(ctx.app, sampler_value)
        wanted_schedule = str(ctx.config(f"{tab}/Schedule type").value)
        schedule = gr.Dropdown(label="Schedule type", choices=schedules,
                               value=wanted_schedule if wanted_schedule in schedules else schedules[0],
                               elem_id=f"{tab}_scheduler")
    steps = ctx.slider(tab, "Sampling steps")

    def follow_sampler(name: str, current: str) -> gr.Dropdown:
        choices = schedule_choices(ctx.app, name)
        return gr.Dropdown(choices=choices, value=current if current in choices else choices[0])

    sampler.change(follow_sampler, inputs=[sampler, schedule], outputs=schedule, show_progress="hidden", queue=False)
    return sampler, schedule, steps


@dataclass
class ResizeBy:
    """A1111's "Resize to" / "Resize by" tabs of img2img: which one is selected (`RESIZE_TO` / `RESIZE_BY`), the
    scale and the "resize: from WxH to WxH" line."""

    selected: gr.State
    to_tab: gr.Tab
    by_tab: gr.Tab
    scale: gr.Slider
    preview: gr.HTML


RESIZE_TO, RESIZE_BY = 0, 1


def scaled_size(picture: Image.Image, scale: float) -> tuple[int, int]:
    """A1111's "Resize by": the picture's size times `scale`, down to a multiple of 8 (the size A1111's result has),
    at least 64."""
    return max(64, int(picture.width * scale) // 8 * 8), max(64, int(picture.height * scale) // 8 * 8)


def _size_sliders(ctx: UiContext, tab: str, resize_by: bool) -> tuple[gr.Slider, gr.Slider, ResizeBy | None]:
    if not resize_by:
        return ctx.slider(tab, "Width"), ctx.slider(tab, "Height"), None
    selected = gr.State(RESIZE_TO)
    with gr.Tabs(elem_id=f"{tab}_tabs_resize"):
        with gr.Tab("Resize to", elem_id=f"{tab}_tab_resize_to") as to_tab:
            width, height = ctx.slider(tab, "Width"), ctx.slider(tab, "Height")
        with gr.Tab("Resize by", elem_id=f"{tab}_tab_resize_by") as by_tab:
            scale = ctx.slider(tab, "Scale")
            preview = gr.HTML("", elem_id=f"{tab}_scale_resolution_preview", padding=False)
    to_tab.select(lambda: RESIZE_TO, outputs=selected, show_progress="hidden", queue=False)
    by_tab.select(lambda: RESIZE_BY, outputs=selected, show_progress="hidden", queue=False)
    return width, height, ResizeBy(selected, to_tab, by_tab, scale, preview)


def build_sampling_rows(ctx: UiContext, tab: str, detect_size: bool = False, resize_by: bool = False) -> SamplingRows:
    """Sampler + schedule + steps, width/height with swap (and "size from image"; with `resize_by` in a "Resize to"
    tab beside "Resize by"), batch count/size and CFG."""
    sampler, schedule, steps = build_sampler_row(ctx, tab)
    with gr.Row(elem_id=f"{tab}_dimensions_row"):
        with gr.Column(scale=4):
            width, height, by = _size_sliders(ctx, tab, resize_by)
        with gr.Column(scale=0, min_width=48):
            swap = tool_button(SWAP_ICON, f"{tab}_res_switch_btn")
            detect = tool_button(DETECT_SIZE_ICON, f"{tab}_detect_image_size_btn") if detect_size else None
        with gr.Column(scale=2):
            batch_count = ctx.slider(tab, "Batch count")
            batch_size = ctx.slider(tab, "Batch size")
    cfg_scale = ctx.slider(tab, "CFG Scale")
    swap.click(lambda w, h: (h, w), inputs=[width, height], outputs=[width, height], show_progress="hidden",
               queue=False)
    return SamplingRows(sampler, schedule, steps, width, height, swap, batch_count, batch_size, cfg_scale, detect, by)


# --- seed ---------------------------------------------------------------------------------------------------------


@dataclass
class SeedRows:
    seed: gr.Number
    random_seed: gr.Button
    reuse_seed: gr.Button
    extra: gr.Checkbox
    subseed: gr.Number
    random_subseed: gr.Button
    reuse_subseed: gr.Button
    subseed_strength: gr.Slider
    seed_resize_from_w: gr.Slider
    seed_resize_from_h: gr.Slider

    def named(self) -> dict[str, gr.components.Component]:
        return {"seed": self.seed, "seed_extra": self.extra, "subseed": self.subseed,
                "subseed_strength": self.subseed_strength, "seed_resize_from_w": self.seed_resize_from_w,
                "seed_resize_from_h": self.seed_resize_from_h}


_RESIZE_FROM = ComponentConfig(0, 0, 2048, 8)


def build_seed_rows(ctx: UiContext, tab: str) -> SeedRows:
    """Seed with dice/recycle, and behind "Extra" the variation seed, its strength and seed resize."""
    with gr.Row(elem_id=f"{tab}_seed_row"):
        seed = gr.Number(label="Seed", value=int(ctx.config(f"{tab}/Seed").value), precision=0,
                         elem_id=f"{tab}_seed", scale=4, min_width=120)
        random_seed = tool_button(RANDOM_ICON, f"{tab}_random_seed")
        reuse_seed = tool_button(REUSE_ICON, f"{tab}_reuse_seed")
        extra = gr.Checkbox(label="Extra", value=False, elem_id=f"{tab}_subseed_show", scale=0, min_width=80)
    with gr.Group(visible=False, elem_id=f"{tab}_seed_extras") as extras:
        with gr.Row():
            subseed = gr.Number(label="Variation seed", value=int(ctx.config(f"{tab}/Variation seed").value),
                                precision=0, elem_id=f"{tab}_subseed", scale=4, min_width=120)
            random_subseed = tool_button(RANDOM_ICON, f"{tab}_random_subseed")
            reuse_subseed = tool_button(REUSE_ICON, f"{tab}_reuse_subseed")
            subseed_strength = ctx.slider(tab, "Variation strength", scale=4)
        with gr.Row():
            resize_w = ctx.slider(tab, "Resize seed from width", _RESIZE_FROM)
            resize_h = ctx.slider(tab, "Resize seed from height", _RESIZE_FROM)
    random_seed.click(lambda: -1, outputs=seed, show_progress="hidden", queue=False)
    random_subseed.click(lambda: -1, outputs=subseed, show_progress="hidden", queue=False)
    extra.change(lambda on: gr.Group(visible=bool(on)), inputs=extra, outputs=extras, show_progress="hidden",
                 queue=False)
    return SeedRows(seed, random_seed, reuse_seed, extra, subseed, random_subseed, reuse_subseed, subseed_strength,
                    resize_w, resize_h)
