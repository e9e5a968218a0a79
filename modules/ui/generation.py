"""What txt2img and img2img share: the tab's widget collection and the wiring of Generate, Interrupt, Skip,
reuse-seed and "read generation parameters".

Handlers receive Gradio's ``{component: value}`` dict (set-style `inputs`) and re-key it by binder names with
`bind.named_values`; the request is built by the tab's own `make_request(values, data)`, which adds what only
that tab has (init image, mask, sub-tab). The extensions' "Script" area of the tab (`build_script_area`) then puts
its values, by name, into `request.extension_args` (`ScriptArea.apply`). The session hash of the browser
(`gr.Request.session_hash`, or the login with --gradio-auth) is the job owner, so Interrupt and Skip reach only
this session's job; the login or the browser's address is its group in the queue's round-robin
(`progress.job_owner`, `progress.job_group`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import gradio as gr
from gradio.blocks import Block

from modules import infotext
from modules.errors import UserError
from modules.extensions.api import ScriptMode
from modules.extensions.script_ui import ScriptArea, paste_outputs, paste_scripts, render_script_area
from modules.types import GenerationRequest, GenerationResult
from modules.ui.bind import named_values
from modules.ui.common import PromptRow, SamplingRows, SeedRows, UiContext
from modules.ui.paste import has_parameters, values_from_infotext
from modules.ui.progress import (
    RunButtons,
    finish_updates,
    interrupt_job,
    job_group,
    job_owner,
    skip_job,
    stream_generation,
)
from modules.ui.queue_panel import QueuePanel, enqueue_job, queue_updates, wire_queue_panel
from modules.ui.results import ResultPanel, selected_image, selected_index
from modules.ui.toprow import checkpoint_title

if TYPE_CHECKING:
    from modules.app import App

log = logging.getLogger(__name__)

RequestBuilder = Callable[[Mapping[str, Any], Mapping[Any, Any]], GenerationRequest]
"""(named widget values, raw Gradio input dict) -> request; raises UserError for unusable input."""

RunOverride = Callable[[GenerationRequest, Mapping[Any, Any], "str | None", "str | None"],
                       "Iterator[dict[Any, Any]] | None"]
"""(request, raw Gradio input dict, owner, group) -> the panel updates of a run that is not one plain job (img2img's
Batch sub-tab), or None for the usual single job; may raise UserError."""


@dataclass
class GenerationTab:
    """One generation tab: its rows, results panel, and every widget that feeds its requests, by binder name."""

    name: str
    prompt_row: PromptRow
    sampling: SamplingRows
    seeds: SeedRows
    panel: ResultPanel
    inputs: dict[str, gr.components.Component]
    make_request: RequestBuilder
    extra_inputs: list[gr.components.Component] = field(default_factory=list)
    scripts: ScriptArea | None = None
    run_override: RunOverride | None = None
    queue: QueuePanel | None = None
    """The tab's Queue accordion (with the prompt row's Enqueue button); None for tabs without one."""
    enqueue_refusal: Callable[[Mapping[Any, Any]], "str | None"] | None = None
    """(raw Gradio input dict) -> why Enqueue cannot queue this input (img2img's Batch sub-tab), or None."""

    @property
    def buttons(self) -> RunButtons:
        return RunButtons(self.prompt_row.generate, self.prompt_row.interrupt, self.prompt_row.skip)

    def request_inputs(self) -> set[Block]:
        script_inputs = self.scripts.inputs.values() if self.scripts is not None else ()
        return {*self.inputs.values(), *self.extra_inputs, *script_inputs}

    def build_request(self, data: Mapping[Any, Any]) -> GenerationRequest:
        """The request for Gradio's input dict `data`: the tab's own fields, then the extension scripts' values."""
        request = self.make_request(named_values(self.inputs, data), data)
        if self.scripts is not None:
            request = self.scripts.apply(request, named_values(self.scripts.inputs, data))
        return request

    def paste_outputs(self) -> list[Any]:
        """What pasting an infotext may update: the tab's own widgets and the controls of scripts that own infotext
        keys (API 1.5 `InfotextPaste`)."""
        return [*self.inputs.values(), *(paste_outputs(self.scripts) if self.scripts is not None else ())]

    def outputs(self) -> list[Any]:
        panel, buttons = self.panel, self.buttons
        return [panel.progress, panel.preview, panel.gallery, panel.infotext, panel.result, panel.selected,
                panel.job, buttons.generate, buttons.interrupt, buttons.skip]


def collect_inputs(*groups: Mapping[str, gr.components.Component]) -> dict[str, gr.components.Component]:
    """Merge the `named()` dicts of a tab's rows; a name defined twice is a programming error."""
    merged: dict[str, gr.components.Component] = {}
    for group in groups:
        for name, component in group.items():
            if name in merged:
                raise ValueError(f"widget name {name!r} is used twice in one tab")
            merged[name] = component
    return merged


def build_script_area(ctx: UiContext, mode: ScriptMode) -> ScriptArea:
    """The extensions' script controls of a generation tab (always-on accordions, then the "Script" dropdown),
    drawn in the current layout; see modules.extensions.script_ui."""
    with gr.Column(elem_id=f"{mode}_script_container"):
        return render_script_area(ctx.app.extensions.scripts, mode)


def wire_generation_tab(ctx: UiContext, tab: GenerationTab) -> None:
    """Generate/Interrupt/Skip, reuse-seed buttons and the paste button of one tab."""
    app = ctx.app

    def generate(data: dict, request: gr.Request) -> Iterator[dict]:
        try:
            generation_request = tab.build_request(data)
            custom = tab.run_override(generation_request, data, job_owner(request), job_group(request)) \
                if tab.run_override else None
            if custom is not None:
                yield from custom
                return
        except UserError as error:
            raise gr.Error(str(error), print_exception=False) from error
        yield from stream_generation(app, tab.panel, tab.buttons, generation_request, job_owner(request),
                                     group=job_group(request))

    # concurrency_limit=None: every session's handler just waits on the JobQueue, which orders the work and
    # reports the queue position; `.then` runs whatever the outcome, so the buttons always come back.
    tab.prompt_row.generate.click(
        generate, inputs=tab.request_inputs(), outputs=tab.outputs(), show_progress="hidden", concurrency_limit=None,
    ).then(lambda: finish_updates(tab.panel, tab.buttons), outputs=tab.outputs(), show_progress="hidden", queue=False)

    def interrupt(job_id: str | None, request: gr.Request) -> None:
        interrupt_job(app, job_id, job_owner(request))

    def skip(job_id: str | None, request: gr.Request) -> None:
        skip_job(app, job_id, job_owner(request))

    tab.prompt_row.interrupt.click(interrupt, inputs=tab.panel.job, show_progress="hidden", queue=False)
    tab.prompt_row.skip.click(skip, inputs=tab.panel.job, show_progress="hidden", queue=False)
    _wire_reuse_seed(tab)
    _wire_paste(app, tab)
    _wire_enqueue(app, tab)


def _wire_enqueue(app: "App", tab: GenerationTab) -> None:
    """Enqueue (submit and return at once) and the Queue panel, when the tab has them."""
    queue, button = tab.queue, tab.prompt_row.enqueue
    if queue is None:
        return
    wire_queue_panel(app, queue, tab.panel)
    if button is None:
        return

    def enqueue(data: dict, request: gr.Request) -> dict:
        try:
            refusal = tab.enqueue_refusal(data) if tab.enqueue_refusal is not None else None
            if refusal:
                raise UserError(refusal)
            generation_request = tab.build_request(data)
        except UserError as error:
            raise gr.Error(str(error), print_exception=False) from error
        owner = job_owner(request)
        job = enqueue_job(app, generation_request, owner, job_group(request))
        return queue_updates(app, queue, owner, choose=job.id)

    button.click(enqueue, inputs=tab.request_inputs(), outputs=queue.outputs(), show_progress="hidden",
                 concurrency_limit=None)


def _wire_reuse_seed(tab: GenerationTab) -> None:
    def seed_of(result: GenerationResult | None, selected: int | None, subseed: bool) -> Any:
        index = selected_index(result, selected)
        if result is None or index is None:
            return gr.skip()
        seeds = result.subseeds if subseed else result.seeds
        return seeds[index] if index < len(seeds) else gr.skip()

    panel = tab.panel
    tab.seeds.reuse_seed.click(lambda r, s: seed_of(r, s, False), inputs=[panel.result, panel.selected],
                               outputs=tab.seeds.seed, show_progress="hidden", queue=False)
    tab.seeds.reuse_subseed.click(lambda r, s: seed_of(r, s, True), inputs=[panel.result, panel.selected],
                                  outputs=tab.seeds.subseed, show_progress="hidden", queue=False)


def paste_updates(app: "App", text: str, inputs: Mapping[str, gr.components.Component],
                  current: Mapping[str, Any], *, send_seed: bool = True, send_size: bool = True,
                  scripts: ScriptArea | None = None) -> dict[Any, Any]:
    """{component: value} for the widgets of `inputs` (and the controls of `scripts` that own infotext keys) that
    infotext `text` changes; warnings become toasts."""
    pasted = values_from_infotext(app.samplers, text, current, send_seed=send_seed, send_size=send_size,
                                  upscalers=app.models.upscalers, checkpoints=checkpoint_title(app))
    from_scripts = paste_scripts(scripts, infotext.parse(text).written_params()) if scripts is not None else None
    for warning in pasted.warnings + (from_scripts.warnings if from_scripts is not None else []):
        gr.Warning(warning)
    updates: dict[Any, Any] = {inputs[name]: value for name, value in pasted.values.items()}
    if from_scripts is not None:
        updates.update(from_scripts.updates)
    if "override_settings" in pasted.values:  # shown only while it holds something, its entries as choices
        entries = pasted.values["override_settings"]
        updates[inputs["override_settings"]] = gr.Dropdown(choices=entries, value=entries, visible=bool(entries))
    return updates


def _wire_paste(app: "App", tab: GenerationTab) -> None:
    def paste(data: dict) -> dict:
        values = named_values(tab.inputs, data)
        text = values.get("prompt") or ""
        if not text.strip():
            found = selected_image(data[tab.panel.result], data[tab.panel.selected])
            text = found[1] if found is not None else ""
        if not has_parameters(text):
            gr.Warning("No generation parameters found: paste an infotext (prompt, 'Negative prompt:' line and "
                       "the 'Steps: ..., Sampler: ...' line) into the prompt box, or generate a picture first.")
            return {}
        return paste_updates(app, text, tab.inputs, values, scripts=tab.scripts)

    tab.prompt_row.paste.click(paste, inputs={*tab.inputs.values(), tab.panel.result, tab.panel.selected},
                               outputs=tab.paste_outputs(), show_progress="hidden")
