"""The Checkpoint Merger tab (A1111's): pick A, B (and C), a method and a multiplier, Merge; the work runs in the
job queue (`App.submit_merge`, `modules.models.merge`) with its progress shown, and the new checkpoint appears in
the checkpoint lists (this tab's and the one above the tabs)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import gradio as gr
from gradio.blocks import Block

from modules.errors import UserError
from modules.jobs import JobState
from modules.models.merge import CONFIG_SOURCES, FORMATS, METHODS, MergeRequest
from modules.ui.common import REFRESH_ICON, tool_button
from modules.ui.progress import failure_message, job_group, job_owner, progress_html, watch
from modules.ui.toprow import VAE_NONE, checkpoint_choices

if TYPE_CHECKING:
    from modules.app import App

TAB = "modelmerger"


@dataclass
class MergerTab:
    primary: gr.Dropdown
    secondary: gr.Dropdown
    tertiary: gr.Dropdown
    refresh: gr.Button
    name: gr.Textbox
    multiplier: gr.Slider
    method: gr.Radio
    checkpoint_format: gr.Radio
    save_as_half: gr.Checkbox
    save_metadata: gr.Checkbox
    config_source: gr.Radio
    bake_in_vae: gr.Dropdown
    discard_weights: gr.Textbox
    merge: gr.Button
    result: gr.HTML

    def lists(self) -> list[gr.Dropdown]:
        return [self.primary, self.secondary, self.tertiary]


def vae_names(app: "App") -> list[str]:
    return [VAE_NONE, *(record.name for record in app.models.list_vaes())]


def build_merger_tab(app: "App") -> MergerTab:
    """Create the tab inside the main `gr.Tabs` (wired by `wire_merger_tab`)."""
    choices = checkpoint_choices(app)
    with gr.Tab("Checkpoint Merger", id=TAB, elem_id=f"tab_{TAB}"):
        with gr.Row(equal_height=False):
            with gr.Column(variant="compact"):
                gr.Markdown("A merger of the two checkpoints will be generated in your **checkpoint** directory.")
                with gr.Row():
                    primary = gr.Dropdown(choices, value=None, label="Primary model (A)",
                                          elem_id="modelmerger_primary_model_name")
                    secondary = gr.Dropdown(choices, value=None, label="Secondary model (B)",
                                            elem_id="modelmerger_secondary_model_name")
                    tertiary = gr.Dropdown(choices, value=None, label="Tertiary model (C)",
                                           elem_id="modelmerger_tertiary_model_name")
                    refresh = tool_button(REFRESH_ICON, "modelmerger_refresh")
                name = gr.Textbox(label="Custom Name (Optional)", elem_id="modelmerger_custom_name")
                multiplier = gr.Slider(0.0, 1.0, value=0.3, step=0.05, label="Multiplier (M) - set to 0 to get model A",
                                       elem_id="modelmerger_interp_amount")
                method = gr.Radio(list(METHODS), value="Weighted sum", label="Interpolation Method",
                                  elem_id="modelmerger_interp_method")
                with gr.Row():
                    checkpoint_format = gr.Radio(list(FORMATS), value="safetensors", label="Checkpoint format",
                                                 elem_id="modelmerger_checkpoint_format")
                    save_as_half = gr.Checkbox(value=False, label="Save as float16",
                                               elem_id="modelmerger_save_as_half")
                    save_metadata = gr.Checkbox(value=True, label="Save metadata",
                                                elem_id="modelmerger_save_metadata")
                config_source = gr.Radio(list(CONFIG_SOURCES), value=CONFIG_SOURCES[0], label="Copy config from",
                                         elem_id="modelmerger_config_method")
                bake_in_vae = gr.Dropdown(vae_names(app), value=VAE_NONE, label="Bake in VAE",
                                          elem_id="modelmerger_bake_in_vae")
                discard_weights = gr.Textbox(label="Discard weights with matching name",
                                             elem_id="modelmerger_discard_weights")
                merge = gr.Button("Merge", variant="primary", elem_id="modelmerger_merge")
            with gr.Column(variant="compact"):
                result = gr.HTML("", elem_id="modelmerger_result")
    tab = MergerTab(primary, secondary, tertiary, refresh, name, multiplier, method, checkpoint_format,
                    save_as_half, save_metadata, config_source, bake_in_vae, discard_weights, merge, result)
    return tab


def merge_request(values: dict[Any, Any], tab: MergerTab) -> MergeRequest:
    """The tab's values as a `MergeRequest` (`UserError` when A is missing)."""
    primary = values[tab.primary]
    if not primary:
        raise UserError("Choose the primary model (A) first.")
    vae = values[tab.bake_in_vae]
    return MergeRequest(
        primary=primary, secondary=values[tab.secondary] or None, tertiary=values[tab.tertiary] or None,
        method=values[tab.method], multiplier=float(values[tab.multiplier]), name=values[tab.name] or "",
        checkpoint_format=values[tab.checkpoint_format], save_as_half=bool(values[tab.save_as_half]),
        config_source=values[tab.config_source], bake_in_vae=vae if vae and vae != VAE_NONE else None,
        discard_weights=values[tab.discard_weights] or "", save_metadata=bool(values[tab.save_metadata]))


def wire_merger_tab(app: "App", tab: MergerTab, checkpoint_lists: list[gr.Dropdown]) -> None:
    """Merge (streaming the job's progress) and refresh; `checkpoint_lists` (the top row's) get the new file."""
    lists = [*tab.lists(), *checkpoint_lists]

    def refreshed() -> dict[Any, Any]:
        choices = checkpoint_choices(app)
        return {**{dropdown: gr.Dropdown(choices=choices) for dropdown in lists},
                tab.bake_in_vae: gr.Dropdown(choices=vae_names(app))}

    def refresh() -> dict[Any, Any]:
        app.models.refresh()
        return refreshed()

    tab.refresh.click(refresh, outputs=[*lists, tab.bake_in_vae], show_progress="hidden")

    def merge(values: dict[Any, Any], request: gr.Request) -> Iterator[dict[Any, Any]]:
        try:
            job = app.submit_merge(merge_request(values, tab), owner=job_owner(request), group=job_group(request))
        except UserError as error:
            raise gr.Error(str(error), print_exception=False) from error
        yield {tab.merge: gr.Button(interactive=False)}
        for view in watch(job):
            text = html.escape(view.textinfo) if view.textinfo else ""
            yield {tab.result: progress_html(view) + (f"<div class='progress-text'>{text}</div>" if text else "")}
        if job.state is JobState.FAILED:
            message = failure_message(job)
            yield {tab.merge: gr.Button(interactive=True), tab.result: f"<p>{html.escape(message)}</p>"}
            raise gr.Error(message, print_exception=False)
        done = {tab.merge: gr.Button(interactive=True), **refreshed()}
        path = job.result
        if job.state is not JobState.DONE or not isinstance(path, Path):
            gr.Warning("The merge was cancelled.")
            yield {**done, tab.result: ""}
            return
        gr.Info(f"Checkpoint saved to {path}")
        yield {**done, tab.result: f"<p>Checkpoint saved to {html.escape(str(path))}</p>"}

    inputs: set[Block] = {tab.primary, tab.secondary, tab.tertiary, tab.name, tab.multiplier, tab.method,
                          tab.checkpoint_format, tab.save_as_half, tab.save_metadata, tab.config_source,
                          tab.bake_in_vae, tab.discard_weights}
    tab.merge.click(merge, inputs=inputs, outputs=[tab.result, tab.merge, *lists, tab.bake_in_vae],
                    show_progress="hidden", concurrency_limit=None)
