"""img2img's "Batch" sub-tab: its fields, and the run of one job per picture of the input folder.

The planning (folders, masks, PNG info, output names) is `modules.img2img_batch`; this module draws A1111 1.10's
fields and streams the run into the results panel: "Image i of n" above the usual progress bar, every picture a
job of its own (img2img, or inpaint when it has a mask), its results saved in the output folder (or, without one,
as usual), the gallery showing the run's pictures (the first `SHOW_RESULTS_LIMIT`, as A1111's option) at the end.
Interrupt stops the current job and the pictures after it; Skip skips the current picture only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import gradio as gr
from PIL import Image, ImageOps

from modules.errors import InvalidRequest, UserError
from modules.img2img_batch import (
    PNG_INFO_PROPS,
    BatchItem,
    apply_png_info,
    plan_batch,
    png_info_params,
    read_png_info,
    resolve_folder,
    save_batch_outputs,
)
from modules.job_options import OutputOptions
from modules.jobs import JobState
from modules.types import GenerationRequest, GenerationResult
from modules.ui.common import scaled_size
from modules.ui.extensions_tab import warn_extension_errors
from modules.ui.paste import normalise_sampler
from modules.ui.progress import progress_html, raise_for_job, view_of, watch
from modules.ui.results import show_result

if TYPE_CHECKING:
    from modules.app import App
    from modules.ui.generation import GenerationTab

SHOW_RESULTS_LIMIT = 32
"""Pictures shown in the gallery after a run (A1111's `img2img_batch_show_results_limit` default)."""


@dataclass
class BatchFields:
    """The widgets of the Batch sub-tab."""

    input_dir: gr.Textbox
    output_dir: gr.Textbox
    mask_dir: gr.Textbox
    use_png_info: gr.Checkbox
    png_info_props: gr.CheckboxGroup
    png_info_dir: gr.Textbox

    def components(self) -> list[gr.components.Component]:
        return [self.input_dir, self.output_dir, self.mask_dir, self.use_png_info, self.png_info_props,
                self.png_info_dir]


def build_batch_fields() -> BatchFields:
    """A1111 1.10's Batch fields (inside the sub-tab)."""
    gr.Markdown("Process images in a folder on the machine running the server. Relative paths are inside the data "
                "directory. Add an inpaint mask folder to inpaint the images whose masks (same file name, any "
                "extension) it holds; the output folder receives the results named after the inputs (leave it "
                "empty for the usual img2img output folder).", elem_id="img2img_batch_description")
    input_dir = gr.Textbox(label="Input directory", elem_id="img2img_batch_input_dir")
    output_dir = gr.Textbox(label="Output directory", elem_id="img2img_batch_output_dir")
    mask_dir = gr.Textbox(label="Inpaint batch mask directory (required for inpaint batch processing only)",
                          elem_id="img2img_batch_inpaint_mask_dir")
    with gr.Accordion("PNG info", open=False, elem_id="img2img_batch_png_info_accordion"):
        use_png_info = gr.Checkbox(label="Append png info to prompts", elem_id="img2img_batch_use_png_info")
        png_info_dir = gr.Textbox(label="PNG info directory", placeholder="Leave empty to use input directory",
                                  elem_id="img2img_batch_png_info_dir")
        png_info_props = gr.CheckboxGroup(
            label="Parameters to take from png info", choices=list(PNG_INFO_PROPS), value=[],
            info="Prompts from png info will be appended to prompts set in ui.", elem_id="img2img_batch_png_info_props")
    return BatchFields(input_dir, output_dir, mask_dir, use_png_info, png_info_props, png_info_dir)


NO_GRID = {"grid_save": False, "return_grid": False}
"""Settings of every job of a batch: one job per input makes no grid of its pictures (as in A1111's batch)."""

class BatchStops:
    """Per-session "stop the batch" flags: Interrupt also stops the pictures not started yet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str | None, threading.Event] = {}

    def start(self, owner: str | None) -> threading.Event:
        with self._lock:
            event = self._events[owner] = threading.Event()
            return event

    def stop(self, owner: str | None) -> None:
        with self._lock:
            event = self._events.get(owner)
        if event is not None:
            event.set()

    def finish(self, owner: str | None, event: threading.Event) -> None:
        with self._lock:
            if self._events.get(owner) is event:
                del self._events[owner]


def _open(path: Any) -> Image.Image:
    with Image.open(path) as picture:
        picture.load()
        return ImageOps.exif_transpose(picture) or picture


def _combined(results: list[GenerationResult], base: GenerationRequest, notes: list[str],
              interrupted: bool) -> GenerationResult:
    def joined(name: str) -> tuple[Any, ...]:
        return tuple(value for result in results for value in getattr(result, name))[:SHOW_RESULTS_LIMIT]

    total = sum(float(result.timings.get("total", 0.0)) for result in results)
    return GenerationResult(
        images=joined("images"), seeds=joined("seeds"), subseeds=joined("subseeds"), prompts=joined("prompts"),
        negative_prompts=joined("negative_prompts"), infotexts=joined("infotexts"),
        request=results[-1].request if results else base, timings={"total": total}, interrupted=interrupted,
        comments=tuple(dict.fromkeys([*notes, *(c for result in results for c in result.comments)])))


class BatchRun:
    """One Batch run of a session, streamed into the tab's panel (see the module docstring)."""

    def __init__(self, app: "App", tab: "GenerationTab", stops: BatchStops) -> None:
        self.app, self.tab, self.stops = app, tab, stops

    def folders(self, values: Mapping[str, Any]) -> tuple[Any, Any, Any, Any]:
        data_dir = self.app.paths.data_dir
        allow = self.app.launch.allow_batch_dirs_outside_data

        def folder(name: str, what: str) -> Any:
            return resolve_folder(values.get(name), data_dir, allow_outside=allow, what=what)

        input_dir = folder("input_dir", "Input directory")
        if input_dir is None:
            raise InvalidRequest("Batch needs an input directory: the folder of the pictures to process.")
        info_dir = folder("png_info_dir", "PNG info directory") if values.get("use_png_info") else None
        return (input_dir, folder("output_dir", "Output directory"),
                folder("mask_dir", "Inpaint batch mask directory"), info_dir)

    def checkpoint_for_hash(self, model_hash: str) -> str | None:
        try:
            return str(self.app.models.resolve_checkpoint(model_hash).title)
        except UserError:
            return None

    def request_for(self, base: GenerationRequest, item: BatchItem, values: Mapping[str, Any],
                    notes: list[str]) -> GenerationRequest:
        picture = _open(item.image).convert("RGB")
        request = base.with_changes(mode="img2img", init_image=picture, mask=None,
                                    overrides={**base.overrides, **NO_GRID})
        scale = values.get("scale_by")
        if scale:  # "Resize by": each picture's own size times the scale, as in A1111's batch
            width, height = scaled_size(picture, float(scale))
            request = request.with_changes(width=width, height=height)
        if item.mask is not None:
            request = request.with_changes(mode="inpaint", mask=_open(item.mask))
        if values.get("use_png_info"):
            params = png_info_params(read_png_info(item.info), values.get("png_info_props") or ())
            request = apply_png_info(request, params, self.checkpoint_for_hash)
            if "Sampler" in params:
                request, warnings = normalise_sampler(self.app.samplers, request, base)
                notes.extend(f"{item.image.name}: {warning}" for warning in warnings)
        return request

    def stream(self, base: GenerationRequest, values: Mapping[str, Any], owner: str | None,
               group: str | None = None) -> Iterator[dict[Any, Any]]:
        input_dir, output_dir, mask_dir, info_dir = self.folders(values)
        plan = plan_batch(input_dir, mask_dir, info_dir)
        notes = list(plan.notes)
        for note in notes:
            gr.Warning(note)
        panel, buttons = self.tab.panel, self.tab.buttons
        settings = self.app.settings.get()
        options, show_previews = OutputOptions.from_mapping(settings), bool(settings["live_previews_enable"])
        results: list[GenerationResult] = []
        interrupted = False
        stop = self.stops.start(owner)
        try:
            count = len(plan.items)
            for index, item in enumerate(plan.items):
                if stop.is_set():
                    interrupted = True
                    break
                try:
                    request = self.request_for(base, item, values, notes)
                except (OSError, ValueError, Image.DecompressionBombError) as error:
                    notes.append(f"Skipped {item.image.name}: it cannot be read as an image ({error}).")
                    gr.Warning(notes[-1])
                    continue
                job = self.app.submit(request, owner=owner, save=False if output_dir is not None else None,
                                      group=group)
                header = f"<div class='progress-text batch-progress'>Image {index + 1} of {count}</div>"
                yield {panel.job: job.id, **buttons.running(), panel.progress: header + progress_html(view_of(job, 0))}
                for view in watch(job):
                    if not view.finished:
                        update: dict[Any, Any] = {panel.progress: header + progress_html(view)}
                        if view.preview is not None and show_previews:
                            update[panel.preview] = gr.Image(value=view.preview, visible=True)
                        yield update
                warn_extension_errors(self.app.extensions, job)
                result = raise_for_job(job)
                if result is not None and result.images:
                    if output_dir is not None:
                        save_batch_outputs(result, output_dir, item.image.stem, options)
                    results.append(result)
                if job.state in (JobState.INTERRUPTED, JobState.CANCELLED) or stop.is_set():
                    interrupted = True
                    break
        finally:
            self.stops.finish(owner, stop)
        combined = _combined(results, base, notes, interrupted)
        hide = bool(settings["do_not_show_images"])
        yield {panel.progress: "", panel.preview: gr.Image(value=None, visible=False), panel.job: None,
               **buttons.idle(), **show_result(panel, combined, hide)}
