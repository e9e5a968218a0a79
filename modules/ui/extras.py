"""The Extras tab (A1111 layout): Single Image, Batch Process (several uploads) or Batch from Directory (input and
output folders inside the data directory) on the left with the upscale
controls ("Scale by" / "Scale to" with crop to fit, Upscaler 1, Upscaler 2 and its visibility); the pictures and
the postprocessing text on the right. A run is queued like a generation (`App.submit_extras`) and its results are
saved to `outdir_extras_samples`, as A1111's tab saves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import gradio as gr
from PIL import Image

from modules.errors import UserError
from modules.extras import SCALE_BY, SCALE_TO, ExtrasRequest, ExtrasResult
from modules.ui.progress import job_group, job_owner, progress_html, raise_for_job, watch

if TYPE_CHECKING:
    from modules.app import App

TAB = "extras"
SINGLE, BATCH, DIRECTORY = "single", "batch", "directory"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class ExtrasTab:
    """The tab's widgets (inputs by elem_id; see `build_extras_tab`)."""

    image: gr.Image
    batch: gr.File
    source: gr.State
    sub_tabs: gr.Tabs
    resize_mode: gr.State
    generate: gr.Button
    gallery: gr.Gallery
    info: gr.HTML
    progress: gr.HTML
    send_img2img: gr.Button | None = None
    """"Send to img2img" / "Send to inpaint" with the selected result (wired in `modules.ui.sendto`)."""
    send_inpaint: gr.Button | None = None
    pictures: gr.State | None = None
    """The last result's pictures, in gallery order."""
    selected: gr.State | None = None
    """The gallery index the user picked (None: the first picture)."""


def upscaler_choices(app: "App") -> list[str]:
    """Image upscalers by name (built-ins, then model files), as A1111's Extras dropdowns list them."""
    return [upscaler.name for upscaler in app.models.upscalers.image_upscalers()]


def _open_uploads(files: list[Any] | None) -> tuple[list[Image.Image], list[str]]:
    pictures, names = [], []
    for item in files or []:
        path = str(getattr(item, "name", item))
        try:
            with Image.open(path) as opened:
                opened.load()
                picture = opened.copy()
        except OSError as error:
            raise UserError(f"{path.rsplit('/', 1)[-1]} is not a readable image ({error}).") from None
        pictures.append(picture)
        names.append(path.rsplit("/", 1)[-1])
    return pictures, names


def folder_under(data_dir: Path, text: str, what: str, allow_any: bool = False) -> Path:
    """A folder the user typed, relative to the data directory or absolute; it must lie under the data directory
    unless `allow_any` (the server was started with --api-allow-path-options)."""
    folder = Path(text.strip()).expanduser()
    folder = (folder if folder.is_absolute() else data_dir / folder).resolve()
    if not allow_any and not folder.is_relative_to(data_dir.resolve()):
        raise UserError(f"The {what} folder {text!r} is outside the data directory {data_dir}; use a folder inside "
                        "it (or start the server with --api-allow-path-options).")
    return folder


def _directory_pictures(folder: Path) -> tuple[list[Image.Image], list[str]]:
    if not folder.is_dir():
        raise UserError(f"The input folder {folder} does not exist.")
    files = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
    if not files:
        raise UserError(f"The input folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    return _open_uploads([str(path) for path in files])


def extras_request(values: dict[str, Any], data_dir: Path | None = None, allow_any: bool = False) -> ExtrasRequest:
    """The request of the tab's current values (raises UserError when there is nothing to upscale)."""
    output_dir = None
    if values["source"] == BATCH:
        pictures, names = _open_uploads(values["batch"])
    elif values["source"] == DIRECTORY:
        assert data_dir is not None
        if not str(values["input_dir"] or "").strip():
            raise UserError("Batch from Directory needs an input folder.")
        pictures, names = _directory_pictures(folder_under(data_dir, values["input_dir"], "input", allow_any))
        if str(values["output_dir"] or "").strip():
            output_dir = folder_under(data_dir, values["output_dir"], "output", allow_any)
    else:
        image = values["image"]
        pictures, names = ([image] if image is not None else []), []
    if not pictures:
        raise UserError("Nothing to upscale: upload an image first.")
    return ExtrasRequest(
        images=tuple(pictures), names=tuple(names), resize_mode=int(values["resize_mode"]),
        upscaling_resize=float(values["upscaling_resize"]), upscaling_resize_w=int(values["upscaling_resize_w"]),
        upscaling_resize_h=int(values["upscaling_resize_h"]), upscaling_crop=bool(values["upscaling_crop"]),
        upscaler_1=str(values["upscaler_1"] or "None"), upscaler_2=str(values["upscaler_2"] or "None"),
        extras_upscaler_2_visibility=float(values["extras_upscaler_2_visibility"]), save=True, output_dir=output_dir)


def result_html(result: ExtrasResult) -> str:
    note = "<p class='interrupted'>Interrupted.</p>" if result.interrupted else ""
    return f"<div class='infotext'>{result.html_info()}{note}</div>"


def build_extras_tab(app: "App") -> ExtrasTab:
    """Create the tab inside the main `gr.Tabs` and wire its button."""
    choices = upscaler_choices(app)
    with gr.Tab("Extras", id=TAB, elem_id=f"tab_{TAB}"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                source = gr.State(SINGLE)
                with gr.Tabs(elem_id="mode_extras") as sub_tabs:
                    with gr.Tab("Single Image", id=SINGLE, elem_id="extras_single_tab") as single_tab:
                        image = gr.Image(label="Source", type="pil", image_mode=None, height=400,
                                         sources=["upload", "clipboard"], elem_id="extras_image")
                    with gr.Tab("Batch Process", elem_id="extras_batch_process_tab") as batch_tab:
                        batch = gr.File(label="Batch Process", file_count="multiple", file_types=["image"],
                                        elem_id="extras_image_batch")
                    with gr.Tab("Batch from Directory", elem_id="extras_batch_directory_tab") as directory_tab:
                        input_dir = gr.Textbox(label="Input directory", elem_id="extras_batch_input_dir",
                                               placeholder="A folder inside the data directory, e.g. inputs/to-upscale")
                        output_dir = gr.Textbox(label="Output directory", elem_id="extras_batch_output_dir",
                                                placeholder="Leave blank to save images to the default path.")
                resize_mode = gr.State(SCALE_BY)
                with gr.Tabs(elem_id="extras_resize_mode"):
                    with gr.Tab("Scale by", elem_id="extras_scale_by_tab") as scale_by_tab:
                        resize = gr.Slider(1.0, 8.0, value=2.0, step=0.05, label="Resize",
                                           elem_id="extras_upscaling_resize")
                    with gr.Tab("Scale to", elem_id="extras_scale_to_tab") as scale_to_tab:
                        with gr.Row():
                            resize_w = gr.Number(512, label="Width", precision=0, minimum=1,
                                                 elem_id="extras_upscaling_resize_w")
                            resize_h = gr.Number(512, label="Height", precision=0, minimum=1,
                                                 elem_id="extras_upscaling_resize_h")
                            crop = gr.Checkbox(True, label="Crop to fit", elem_id="extras_upscaling_crop")
                with gr.Row():
                    upscaler_1 = gr.Dropdown(choices, value=choices[0], label="Upscaler 1",
                                             elem_id="extras_upscaler_1")
                    upscaler_2 = gr.Dropdown(choices, value=choices[0], label="Upscaler 2",
                                             elem_id="extras_upscaler_2")
                    visibility = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label="Upscaler 2 visibility",
                                           elem_id="extras_upscaler_2_visibility")
                generate = gr.Button("Generate", variant="primary", elem_id="extras_generate")
            with gr.Column(scale=1):
                progress = gr.HTML("", elem_id="extras_progress", elem_classes=["job-progress"])
                gallery = gr.Gallery(label="Result", show_label=False, columns=2, height=520, format="png",
                                     interactive=False, elem_id="extras_gallery")
                with gr.Row():
                    send_img2img = gr.Button("Send to img2img", elem_id="extras_send_to_img2img", size="sm")
                    send_inpaint = gr.Button("Send to inpaint", elem_id="extras_send_to_inpaint", size="sm")
                info = gr.HTML("", elem_id="html_info_extras", elem_classes=["infotext"])
                pictures, selected = gr.State([]), gr.State(None)
    single_tab.select(lambda: SINGLE, outputs=source, show_progress="hidden", queue=False)
    batch_tab.select(lambda: BATCH, outputs=source, show_progress="hidden", queue=False)
    directory_tab.select(lambda: DIRECTORY, outputs=source, show_progress="hidden", queue=False)
    scale_by_tab.select(lambda: SCALE_BY, outputs=resize_mode, show_progress="hidden", queue=False)
    scale_to_tab.select(lambda: SCALE_TO, outputs=resize_mode, show_progress="hidden", queue=False)

    named = {"image": image, "batch": batch, "input_dir": input_dir, "output_dir": output_dir, "source": source,
             "resize_mode": resize_mode,
             "upscaling_resize": resize, "upscaling_resize_w": resize_w, "upscaling_resize_h": resize_h,
             "upscaling_crop": crop, "upscaler_1": upscaler_1, "upscaler_2": upscaler_2,
             "extras_upscaler_2_visibility": visibility}

    def pick(event: gr.SelectData) -> int:
        return int(event.index) if isinstance(event.index, int) else 0

    gallery.select(pick, outputs=selected, show_progress="hidden", queue=False)

    def run(data: dict, request: gr.Request) -> Iterator[dict]:
        values = {name: data[component] for name, component in named.items()}
        try:
            built = extras_request(values, app.paths.data_dir, app.launch.api_allow_path_options)
            job = app.submit_extras(built, owner=job_owner(request), group=job_group(request))
        except UserError as error:
            raise gr.Error(str(error), print_exception=False) from error
        for view in watch(job):
            if not view.finished:
                yield {progress: progress_html(view)}
        raise_for_job(job)  # a failure becomes its message; the result is an ExtrasResult
        result = job.result
        if not isinstance(result, ExtrasResult):
            yield {progress: ""}
            return
        yield {progress: "", gallery: list(result.images), info: result_html(result), pictures: list(result.images),
               selected: None}

    generate.click(run, inputs=set(named.values()), outputs=[progress, gallery, info, pictures, selected],
                   show_progress="hidden", concurrency_limit=None)
    return ExtrasTab(image, batch, source, sub_tabs, resize_mode, generate, gallery, info, progress, send_img2img,
                     send_inpaint, pictures, selected)
