"""The right-hand column of a generation tab: progress, live preview, gallery, infotext and "send to" buttons.

The panel keeps, per browser session (`gr.State`), the id of the job it is watching, the last `GenerationResult`
and the gallery index the user selected, so the "send to", "reuse seed" and "read parameters" buttons act on the
picture the user is looking at.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Mapping

import gradio as gr
from PIL import Image

from modules.types import GenerationResult


@dataclass
class ResultPanel:
    """Widgets and per-session state of one tab's results column."""

    progress: gr.HTML
    preview: gr.Image
    gallery: gr.Gallery
    infotext: gr.HTML
    send_img2img: gr.Button
    send_inpaint: gr.Button
    send_pnginfo: gr.Button
    result: gr.State
    selected: gr.State
    job: gr.State
    upscale: gr.Button | None = None
    """txt2img's "Upscale" action (hires fix on the selected picture; `modules.ui.upscale_action`)."""
    send_extras: gr.Button | None = None
    save: gr.Button | None = None
    """"Save" and "Zip" (`modules.ui.save_buttons`); the saved files are offered in `download`."""
    zip: gr.Button | None = None
    download: gr.File | None = None


def build_result_panel(tab: str, upscale: bool = False) -> ResultPanel:
    """Create the panel inside the current layout context and wire gallery selection -> infotext; `upscale` adds
    txt2img's "Upscale" button."""
    with gr.Column(elem_id=f"{tab}_results", elem_classes=["results-column"]):
        progress = gr.HTML("", elem_id=f"{tab}_progress", elem_classes=["job-progress"], padding=False)
        preview = gr.Image(label="Live preview", visible=False, interactive=False, format="jpeg", height=420,
                           elem_id=f"{tab}_live_preview", show_label=False)
        gallery = gr.Gallery(label="Output", show_label=False, elem_id=f"{tab}_gallery", columns=2, height=520,
                             format="png", object_fit="contain", preview=True, interactive=False,
                             buttons=["download", "fullscreen"])
        with gr.Row(elem_id=f"{tab}_send_buttons"):
            save = gr.Button("Save", elem_id=f"save_{tab}", size="sm")
            zip_button = gr.Button("Zip", elem_id=f"save_zip_{tab}", size="sm")
            send_img2img = gr.Button("Send to img2img", elem_id=f"{tab}_send_to_img2img", size="sm")
            send_inpaint = gr.Button("Send to inpaint", elem_id=f"{tab}_send_to_inpaint", size="sm")
            send_pnginfo = gr.Button("Send to PNG Info", elem_id=f"{tab}_send_to_pnginfo", size="sm")
            send_extras = gr.Button("Send to extras", elem_id=f"{tab}_send_to_extras", size="sm")
            upscale_button = gr.Button("\u2728 Upscale", elem_id=f"{tab}_upscale", size="sm",
                                       elem_classes=["upscale-action"]) if upscale else None
        download = gr.File(None, file_count="multiple", interactive=False, show_label=False, visible=False,
                           elem_id=f"download_files_{tab}")
        infotext = gr.HTML("", elem_id=f"html_info_{tab}", elem_classes=["infotext"])
    panel = ResultPanel(progress, preview, gallery, infotext, send_img2img, send_inpaint, send_pnginfo,
                        gr.State(None), gr.State(None), gr.State(None), upscale_button, send_extras, save,
                        zip_button, download)

    def on_select(result: GenerationResult | None, event: gr.SelectData) -> tuple[int, str]:
        index = int(event.index) if event.index is not None else 0
        return index, infotext_html(result, index)

    gallery.select(on_select, inputs=panel.result, outputs=[panel.selected, panel.infotext], show_progress="hidden")
    return panel


def selected_index(result: GenerationResult | None, selected: int | None) -> int | None:
    """Index of the picture the user looks at (the selected one, else the first); None when there is nothing."""
    if result is None or not result.images:
        return None
    if selected is None or not 0 <= int(selected) < len(result.images):
        return 0
    return int(selected)


def selected_image(result: GenerationResult | None, selected: int | None) -> tuple[Image.Image, str] | None:
    """(image, infotext) of the selected picture of the last result, or None."""
    index = selected_index(result, selected)
    if result is None or index is None:
        return None
    text = result.infotexts[index] if index < len(result.infotexts) else ""
    return result.images[index], text


def _format_seconds(seconds: float) -> str:
    if seconds >= 60:
        minutes, rest = divmod(seconds, 60)
        return f"{int(minutes)} min {rest:.1f} s"
    return f"{seconds:.1f} s"


def infotext_html(result: GenerationResult | None, index: int | None = 0) -> str:
    """The generation parameters of one picture, as A1111 shows them under the gallery (escaped text)."""
    found = selected_image(result, index)
    if result is None or found is None:
        return ""
    _, text = found
    body = "<br>".join(html.escape(line) for line in text.split("\n"))
    timing = _timing_html(result.timings)
    note = "<p class='interrupted'>Interrupted: the pictures finished before the interrupt are shown.</p>" \
        if result.interrupted else ""
    comments = "".join(f"<p class='comments'>{html.escape(comment)}</p>" for comment in result.comments)
    return f"<div class='infotext'><p>{body}</p>{comments}{note}{timing}</div>"


def _timing_html(timings: Mapping[str, float]) -> str:
    total = timings.get("total")
    if total is None and timings:
        total = sum(float(value) for value in timings.values())
    if total is None:
        return ""
    return f"<p class='performance'>Time taken: <b>{_format_seconds(float(total))}</b></p>"


def gallery_images(result: GenerationResult) -> list[Image.Image]:
    """The result's images, each carrying its infotext as PNG `parameters` (so a downloaded file keeps it)."""
    images = []
    for index, image in enumerate(result.images):
        text = result.infotexts[index] if index < len(result.infotexts) else None
        if text and image.info.get("parameters") != text:
            image = image.copy()
            image.info["parameters"] = text
        images.append(image)
    return images


def show_result(panel: ResultPanel, result: GenerationResult | None, hide_images: bool = False,
                selected: int | None = None) -> dict[Any, Any]:
    """Updates that put a finished job's result into the panel (picture `selected` selected, when given)."""
    if result is None:
        return {panel.result: None, panel.selected: None}
    images = [] if hide_images else gallery_images(result)
    return {
        panel.gallery: images if selected is None else gr.Gallery(value=images, selected_index=selected),
        panel.infotext: infotext_html(result, selected or 0),
        panel.result: result,
        panel.selected: selected,
    }
