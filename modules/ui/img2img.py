"""The img2img tab with A1111's sources: img2img, Sketch (paint in colour: the painted picture is the init image),
Inpaint (paint a mask), Inpaint sketch (paint in colour: the strokes are the mask and the new content), Inpaint
upload (image + mask file) and Batch (a folder of pictures, one job each: `modules.ui.img2img_batch`).

One Generate button serves the whole tab, as in A1111: the selected sub-tab decides the request's mode and where
the init image and mask come from (kept per session in a `gr.State`). The inpaint editor is a `gr.ImageEditor`
with a fixed white brush (size adjustable in the editor), eraser, undo and clear; its value is
``{"background", "layers", "composite"}`` and the mask is whatever was painted on the layers (their alpha). The
sketch editors have a colour brush; their composite is the painted picture and the background the original.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Final, Mapping

import gradio as gr
from PIL import Image, ImageChops

from modules.core import masks
from modules.errors import InvalidRequest
from modules.types import GenerationRequest
from modules.ui.bind import (
    INPAINT_AREA_LABELS,
    MASK_MODE_LABELS,
    MASKED_CONTENT_LABELS,
    RESIZE_MODE_LABELS,
    request_from_values,
)
from modules.ui.common import RESIZE_BY, UiContext, build_prompt_row, build_sampling_rows, build_seed_rows, scaled_size
from modules.ui.extra_networks import build_extra_networks
from modules.ui.generation import GenerationTab, build_script_area, collect_inputs, wire_generation_tab
from modules.ui.img2img_batch import BatchFields, BatchRun, BatchStops, build_batch_fields
from modules.ui.interrogate import wire_interrogate
from modules.ui.progress import job_owner
from modules.ui.queue_panel import build_queue_panel
from modules.ui.results import build_result_panel

TAB: Final = "img2img"
SOURCE_IMG2IMG = "img2img"
SOURCE_SKETCH = "sketch"
SOURCE_INPAINT = "inpaint"
SOURCE_INPAINT_SKETCH = "inpaint_sketch"
SOURCE_INPAINT_UPLOAD = "inpaint_upload"
SOURCE_BATCH = "batch"
SUB_TAB_IDS = {SOURCE_IMG2IMG: "img2img_img2img_tab", SOURCE_SKETCH: "img2img_img2img_sketch_tab",
               SOURCE_INPAINT: "img2img_inpaint_tab", SOURCE_INPAINT_SKETCH: "img2img_inpaint_sketch_tab",
               SOURCE_INPAINT_UPLOAD: "img2img_inpaint_upload_tab", SOURCE_BATCH: "img2img_batch_tab"}
SUB_TAB_LABELS = {SOURCE_IMG2IMG: "img2img", SOURCE_SKETCH: "Sketch", SOURCE_INPAINT: "Inpaint",
                  SOURCE_INPAINT_SKETCH: "Inpaint sketch", SOURCE_INPAINT_UPLOAD: "Inpaint upload",
                  SOURCE_BATCH: "Batch"}
"""The sub-tabs in A1111's order, with their labels."""
WITHOUT_INPAINT_OPTIONS = frozenset({SOURCE_IMG2IMG, SOURCE_SKETCH})
"""The sources that are plain img2img: the inpaint options are hidden there."""
SKETCH_COLORS: list[str | tuple[str, float]] = ["#000000", "#ffffff", "#ff0000", "#00a000", "#0000ff", "#ffff00",
                                                "#ff8000", "#808080"]


@dataclass
class Img2ImgTab:
    """The generation tab plus the image sources and the widgets "send to" needs."""

    generation: GenerationTab
    init_image: gr.Image
    editor: gr.ImageEditor
    upload_image: gr.Image
    upload_mask: gr.Image
    source: gr.State
    sub_tabs: gr.Tabs
    inpaint_options: gr.Group
    batch: BatchFields
    sketch: gr.ImageEditor
    inpaint_sketch: gr.ImageEditor


# --- images and masks ---------------------------------------------------------------------------------------------


def mask_from_editor(value: Mapping[str, Any] | None) -> tuple[Image.Image | None, Image.Image | None]:
    """(init image RGB, mask "L" with 255 = repaint) from an ImageEditor value; (None, None) when empty.

    The mask is the union of the painted layers' alpha. Without layers (an editor that flattened the paint) it
    is where the composite differs from the background.
    """
    if not value:
        return None, None
    background, composite = value.get("background"), value.get("composite")
    base = background if background is not None else composite
    if base is None:
        return None, None
    image = base.convert("RGB")
    mask = Image.new("L", image.size, 0)
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        alpha = layer.convert("RGBA").getchannel("A").point(lambda a: 255 if a > 0 else 0)
        if alpha.size != image.size:
            alpha = alpha.resize(image.size, Image.Resampling.NEAREST)
        mask = ImageChops.lighter(mask, alpha)
    if mask.getbbox() is None and background is not None and composite is not None:
        difference = ImageChops.difference(composite.convert("RGB"), background.convert("RGB"))
        if difference.size == image.size:
            mask = difference.convert("L").point(lambda d: 255 if d > 0 else 0)
    return image, mask


def sketch_pictures(value: Mapping[str, Any] | None) -> tuple[Image.Image | None, Image.Image | None]:
    """(original, painted picture) of a sketch editor's value: its background and its composite (either may be
    None; the painted picture falls back to the original)."""
    if not value:
        return None, None
    background, composite = value.get("background"), value.get("composite")
    return background, composite if composite is not None else background


def _require_mask(mask: Image.Image | None, where: str) -> Image.Image:
    if mask is None or mask.getbbox() is None:
        raise InvalidRequest(f"The mask is empty: {where}")
    return mask


def img2img_request(source: str, values: Mapping[str, Any], images: Mapping[str, Any]) -> GenerationRequest:
    """The request of the img2img tab for the selected source; InvalidRequest when its image or mask is missing.

    `images` holds the widget values "init_image", "editor", "upload_image", "upload_mask", "sketch",
    "inpaint_sketch" and "mask_alpha". Batch gives the tab's request without a picture: its run
    (`modules.ui.img2img_batch`) adds each one. Inpaint sketch takes the tab's "Masked content" as A1111 does
    ("original" starts from the painted colours).
    """
    request = request_from_values(values, GenerationRequest(mode="img2img"))
    scale = resize_scale(images)
    picture = current_picture(source, images.get("init_image"), images.get("editor"), images.get("upload_image"),
                              images.get("sketch"), images.get("inpaint_sketch")) if scale is not None else None
    if scale is not None and picture is not None:  # "Resize by": the size follows the picture
        request = request.with_changes(**dict(zip(("width", "height"), scaled_size(picture, scale))))
    if source == SOURCE_BATCH:
        return request.with_changes(mode="img2img", init_image=None, mask=None)
    if source == SOURCE_SKETCH:
        painted = sketch_pictures(images.get("sketch"))[1]
        if painted is None:
            raise InvalidRequest("Sketch needs an image: drop one into the Sketch canvas and paint on it.")
        return request.with_changes(mode="img2img", init_image=painted, mask=None)
    if source == SOURCE_INPAINT_SKETCH:
        original, painted = sketch_pictures(images.get("inpaint_sketch"))
        if original is None or painted is None:
            raise InvalidRequest("Inpaint sketch needs an image: drop one into the Inpaint sketch canvas first.")
        init, painted_mask = masks.inpaint_sketch(original, painted, float(images.get("mask_alpha") or 0),
                                                  request.mask_blur)
        return _inpaint(request, init, painted_mask, images,
                        "paint over the area to change (with Mask transparency below 100).")
    if source == SOURCE_INPAINT:
        image, mask = mask_from_editor(images.get("editor"))
        if image is None:
            raise InvalidRequest("Inpaint needs an image: drop one into the Inpaint canvas first.")
        return _inpaint(request, image, mask, images, "paint over the area to change with the brush.")
    if source == SOURCE_INPAINT_UPLOAD:
        image, mask_file = images.get("upload_image"), images.get("upload_mask")
        if image is None or mask_file is None:
            raise InvalidRequest("Inpaint upload needs both an image and a mask (white = area to change).")
        return _inpaint(request, image.convert("RGB"), mask_file.convert("L"), images,
                        "the uploaded mask has no white (or grey) area to change.")
    image = images.get("init_image")
    if image is None:
        raise InvalidRequest("img2img needs an image: drop one into the img2img canvas first.")
    return request.with_changes(mode="img2img", init_image=image.convert("RGB"), mask=None)


def _inpaint(request: GenerationRequest, image: Image.Image, mask: Image.Image | None, images: Mapping[str, Any],
             hint: str) -> GenerationRequest:
    """The inpaint request of a picture and its mask (which must mark something, unless "Extend canvas" adds the
    area to paint)."""
    if not _extends(images):
        mask = _require_mask(mask, hint)
    return _extended(request.with_changes(mode="inpaint", init_image=image, mask=mask), images)


def _extends(images: Mapping[str, Any]) -> bool:
    return int(images.get("extend_pixels") or 0) > 0 and bool(images.get("extend_sides"))


def _extended(request: GenerationRequest, images: Mapping[str, Any]) -> GenerationRequest:
    """An inpaint request with "Extend canvas" applied: the picture and mask grown on the chosen sides (the new area
    to be painted) and the generation size grown by the same pixels."""
    if not _extends(images) or request.init_image is None:
        return request
    pixels, sides = int(images.get("extend_pixels") or 0), list(images.get("extend_sides") or ())
    image = request.init_image
    scale = (image.width / request.width, image.height / request.height)
    grown, mask = masks.extend_canvas(image, request.mask, pixels, sides, scale)
    width = request.width + pixels * (("left" in sides) + ("right" in sides))
    height = request.height + pixels * (("up" in sides) + ("down" in sides))
    return request.with_changes(init_image=grown, mask=mask, width=width, height=height)


# --- layout -------------------------------------------------------------------------------------------------------


@dataclass
class _Sources:
    sub_tabs: gr.Tabs
    tabs: dict[str, gr.Tab]
    init_image: gr.Image
    editor: gr.ImageEditor
    upload_image: gr.Image
    upload_mask: gr.Image
    batch: BatchFields
    sketch: gr.ImageEditor
    inpaint_sketch: gr.ImageEditor
    mask_alpha: gr.Slider
    copy_to: list[tuple[str, str, gr.Button]]
    """A1111's "Copy image to:" buttons: (from sub-tab, to sub-tab, button)."""


COPY_SOURCES = (SOURCE_IMG2IMG, SOURCE_SKETCH, SOURCE_INPAINT, SOURCE_INPAINT_SKETCH)
"""The sub-tabs with one picture, between which "Copy image to:" copies it."""


def _copy_buttons(source: str) -> list[tuple[str, str, gr.Button]]:
    """The "Copy image to:" row of one sub-tab (the other picture sub-tabs)."""
    buttons = []
    with gr.Row(elem_classes=["copy-image-row"]):
        gr.HTML("Copy image to:", elem_classes=["copy-image-label"], padding=False)
        for target in COPY_SOURCES:
            if target != source:
                button = gr.Button(SUB_TAB_LABELS[target], size="sm", elem_id=f"{source}_copy_to_{target}")
                buttons.append((source, target, button))
    return buttons


def _sketch_editor(label: str, elem_id: str) -> gr.ImageEditor:
    return gr.ImageEditor(
        label=label, type="pil", height=520, elem_id=elem_id, sources=["upload", "clipboard"], layers=False,
        transforms=(), brush=gr.Brush(colors=SKETCH_COLORS, default_color="#ff0000", color_mode="defaults",
                                      default_size=16), eraser=gr.Eraser())


def _build_sources(ctx: UiContext) -> _Sources:
    def tab(source: str) -> gr.Tab:
        return gr.Tab(SUB_TAB_LABELS[source], id=SUB_TAB_IDS[source], elem_id=SUB_TAB_IDS[source])

    with gr.Tabs(elem_id="mode_img2img") as sub_tabs:
        with tab(SOURCE_IMG2IMG) as tab_img2img:
            init_image = gr.Image(label="Image for img2img", type="pil", image_mode="RGBA", height=480,
                                  sources=["upload", "clipboard"], elem_id="img2img_image")
            copy_to = _copy_buttons(SOURCE_IMG2IMG)
        with tab(SOURCE_SKETCH) as tab_sketch:
            sketch = _sketch_editor("Image for img2img (paint on it)", "img2img_sketch")
            copy_to += _copy_buttons(SOURCE_SKETCH)
        with tab(SOURCE_INPAINT) as tab_inpaint:
            editor = gr.ImageEditor(
                label="Image for inpainting with mask", type="pil", height=520, elem_id="img2maskimg",
                sources=["upload", "clipboard"], layers=False, transforms=(),
                brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=32), eraser=gr.Eraser(),
            )
            copy_to += _copy_buttons(SOURCE_INPAINT)
        with tab(SOURCE_INPAINT_SKETCH) as tab_inpaint_sketch:
            inpaint_sketch = _sketch_editor("Color sketch inpainting", "inpaint_sketch")
            copy_to += _copy_buttons(SOURCE_INPAINT_SKETCH)
            mask_alpha = gr.Slider(label="Mask transparency", minimum=0, maximum=100, step=1, value=0,
                                   elem_id="img2img_mask_alpha")
        with tab(SOURCE_INPAINT_UPLOAD) as tab_upload:
            with gr.Row():
                upload_image = gr.Image(label="Image", type="pil", image_mode="RGBA", sources=["upload", "clipboard"],
                                        height=400, elem_id="img_inpaint_base")
                upload_mask = gr.Image(label="Mask (white = change)", type="pil", image_mode="L", height=400,
                                       sources=["upload", "clipboard"], elem_id="img_inpaint_mask")
        with tab(SOURCE_BATCH) as tab_batch:
            batch = build_batch_fields()
    tabs = {SOURCE_IMG2IMG: tab_img2img, SOURCE_SKETCH: tab_sketch, SOURCE_INPAINT: tab_inpaint,
            SOURCE_INPAINT_SKETCH: tab_inpaint_sketch, SOURCE_INPAINT_UPLOAD: tab_upload, SOURCE_BATCH: tab_batch}
    return _Sources(sub_tabs, tabs, init_image, editor, upload_image, upload_mask, batch, sketch, inpaint_sketch,
                    mask_alpha, copy_to)


def _build_inpaint_options(ctx: UiContext) -> tuple[gr.Group, dict[str, gr.components.Component],
                                                    dict[str, gr.components.Component]]:
    with gr.Group(visible=False, elem_id="inpaint_controls") as group:
        with gr.Row():
            mask_blur = ctx.slider(TAB, "Mask blur")
            mask_mode = gr.Radio(label="Mask mode", choices=list(MASK_MODE_LABELS),
                                 value=ctx.config(f"{TAB}/Mask mode").value, elem_id="img2img_mask_mode")
        masked_content = gr.Radio(label="Masked content", choices=list(MASKED_CONTENT_LABELS),
                                  value=ctx.config(f"{TAB}/Masked content").value, elem_id="img2img_inpainting_fill")
        with gr.Row():
            inpaint_area = gr.Radio(label="Inpaint area", choices=list(INPAINT_AREA_LABELS),
                                    value=ctx.config(f"{TAB}/Inpaint area").value, elem_id="img2img_inpaint_full_res")
            padding = ctx.slider(TAB, "Only masked padding, pixels")
        with gr.Row():
            extend_pixels = gr.Slider(label="Extend canvas (pixels per side, 0 = off)", minimum=0, maximum=512,
                                      step=8, value=0, elem_id="img2img_extend_pixels")
            extend_sides = gr.CheckboxGroup(label="Extend sides", choices=list(masks.EXTEND_SIDES),
                                            value=list(masks.EXTEND_SIDES), elem_id="img2img_extend_sides")
    return group, {"mask_blur": mask_blur, "mask_mode": mask_mode, "inpainting_fill": masked_content,
                   "inpaint_area": inpaint_area, "inpaint_padding": padding}, \
        {"extend_pixels": extend_pixels, "extend_sides": extend_sides}


def build_img2img_tab(ctx: UiContext, top_inputs: Mapping[str, gr.components.Component]) -> Img2ImgTab:
    """Create the tab (inside the main `gr.Tabs`) and wire it; `top_inputs` are the checkpoint/VAE/CLIP skip."""
    with gr.Tab("img2img", id=TAB, elem_id=f"tab_{TAB}"):
        source = gr.State(SOURCE_IMG2IMG)  # inside the tab: a bare child of gr.Tabs confuses its tab list
        prompt_row = build_prompt_row(ctx, TAB, enqueue=True)
        build_extra_networks(ctx, TAB, prompt_row.prompt)
        with gr.Row(equal_height=False, elem_id=f"{TAB}_extra_row"):
            with gr.Column(scale=1, elem_id=f"{TAB}_settings"):
                sources = _build_sources(ctx)
                interrogate = gr.Button("Interrogate CLIP", elem_id="interrogate", size="sm")
                resize_mode = gr.Radio(label="Resize mode", choices=list(RESIZE_MODE_LABELS),
                                       value=ctx.config(f"{TAB}/Resize mode").value, elem_id="resize_mode")
                inpaint_group, inpaint_inputs, extend_inputs = _build_inpaint_options(ctx)
                sampling = build_sampling_rows(ctx, TAB, detect_size=True, resize_by=True)
                denoising = ctx.slider(TAB, "Denoising strength")
                seeds = build_seed_rows(ctx, TAB)
                scripts = build_script_area(ctx, TAB)
            with gr.Column(scale=1):
                panel = build_result_panel(TAB)
                queue = build_queue_panel(TAB)
    inputs = collect_inputs(top_inputs, prompt_row.named(), sampling.named(), seeds.named(), inpaint_inputs,
                            {"resize_mode": resize_mode, "denoising_strength": denoising})
    image_inputs = {"init_image": sources.init_image, "editor": sources.editor, "upload_image": sources.upload_image,
                    "upload_mask": sources.upload_mask, "sketch": sources.sketch,
                    "inpaint_sketch": sources.inpaint_sketch, "mask_alpha": sources.mask_alpha, **extend_inputs}
    if sampling.resize_by is not None:
        image_inputs.update(resize_tab=sampling.resize_by.selected, scale_by=sampling.resize_by.scale)
    batch_inputs = dict(zip(("input_dir", "output_dir", "mask_dir", "use_png_info", "png_info_props", "png_info_dir"),
                            sources.batch.components()))

    def make_request(values: Mapping[str, Any], data: Mapping[Any, Any]) -> GenerationRequest:
        images = {name: data.get(component) for name, component in image_inputs.items()}
        return img2img_request(data.get(source) or SOURCE_IMG2IMG, values, images)

    generation = GenerationTab(TAB, prompt_row, sampling, seeds, panel, inputs, make_request,
                               extra_inputs=[source, *image_inputs.values(), *batch_inputs.values()], scripts=scripts,
                               queue=queue)
    generation.enqueue_refusal = lambda data: "The Batch sub-tab runs with Generate (it walks a folder), not " \
        "Enqueue." if data.get(source) == SOURCE_BATCH else None
    stops = BatchStops()
    batch_run = BatchRun(ctx.app, generation, stops)

    def run_override(request: GenerationRequest, data: Mapping[Any, Any], owner: str | None,
                     group: str | None = None) -> Any:
        if data.get(source) != SOURCE_BATCH:
            return None
        folders = {name: data.get(c) for name, c in batch_inputs.items()}
        folders["scale_by"] = resize_scale({name: data.get(c) for name, c in image_inputs.items()})
        return batch_run.stream(request, folders, owner, group)

    generation.run_override = run_override
    wire_generation_tab(ctx, generation)

    def stop_batch(request: gr.Request) -> None:
        stops.stop(job_owner(request))

    prompt_row.interrupt.click(stop_batch, show_progress="hidden", queue=False)
    tab = Img2ImgTab(generation, sources.init_image, sources.editor, sources.upload_image, sources.upload_mask,
                     source, sources.sub_tabs, inpaint_group, sources.batch, sources.sketch, sources.inpaint_sketch)
    _wire_sources(tab, sources.tabs)
    _wire_detect_size(tab)
    _wire_resize_by(tab)
    _wire_copy_image(tab, sources.copy_to)
    wire_interrogate(ctx.app, interrogate, current_picture, _picture_inputs(tab), prompt_row.prompt)
    return tab


def select_source_updates(tab: Img2ImgTab, source: str) -> dict[Any, Any]:
    """Updates that make `source` the active sub-tab (used by its tab's select event and by "send to")."""
    return {tab.source: source, tab.inpaint_options: gr.Group(visible=source not in WITHOUT_INPAINT_OPTIONS),
            tab.sub_tabs: gr.Tabs(selected=SUB_TAB_IDS[source])}


def _source_selector(tab: Img2ImgTab, source: str) -> Callable[[], dict[Any, Any]]:
    def select() -> dict[Any, Any]:
        return {tab.source: source, tab.inpaint_options: gr.Group(visible=source not in WITHOUT_INPAINT_OPTIONS)}

    return select


def _wire_sources(tab: Img2ImgTab, source_tabs: Mapping[str, gr.Tab]) -> None:
    for name, sub_tab in source_tabs.items():
        sub_tab.select(_source_selector(tab, name), outputs=[tab.source, tab.inpaint_options],
                       show_progress="hidden", queue=False)


def _round8(value: int) -> int:
    return max(64, int(round(value / 8)) * 8)


def _picture_inputs(tab: Img2ImgTab) -> list[Any]:
    return [tab.source, tab.init_image, tab.editor, tab.upload_image, tab.sketch, tab.inpaint_sketch]


def current_picture(source: str, image: Any, editor: Any, upload: Any, sketch: Any = None,
                    inpaint_sketch: Any = None) -> Image.Image | None:
    """The picture of the active sub-tab (img2img's image, the inpaint editor's background, the uploaded one, the
    sketch editors' painted picture); None for Batch."""
    if source == SOURCE_BATCH:
        return None
    picture = {SOURCE_INPAINT: mask_from_editor(editor)[0], SOURCE_INPAINT_UPLOAD: upload,
               SOURCE_SKETCH: sketch_pictures(sketch)[1],
               SOURCE_INPAINT_SKETCH: sketch_pictures(inpaint_sketch)[1]}.get(source, image)
    return picture if isinstance(picture, Image.Image) else None


def resize_scale(images: Mapping[str, Any]) -> float | None:
    """The "Resize by" scale when that tab is selected (else None: the width and height sliders count)."""
    if images.get("resize_tab") != RESIZE_BY:
        return None
    return float(images.get("scale_by") or 1.0)


def resize_by_html(picture: Image.Image | None, scale: float) -> str:
    """The line under the Scale slider (A1111's `resize_from_to_html`)."""
    if picture is None:
        return "no image selected"
    width, height = scaled_size(picture, scale)
    return (f"resize: from <span class='resolution'>{picture.width}x{picture.height}</span> to "
            f"<span class='resolution'>{width}x{height}</span>")


def _wire_resize_by(tab: Img2ImgTab) -> None:
    resize_by = tab.generation.sampling.resize_by
    if resize_by is None:
        return

    def preview(scale: float, *pictures: Any) -> str:
        return resize_by_html(current_picture(*pictures), float(scale or 1.0))

    inputs = [resize_by.scale, *_picture_inputs(tab)]
    for event in (resize_by.scale.release, resize_by.by_tab.select, tab.init_image.change, tab.upload_image.change):
        event(preview, inputs=inputs, outputs=resize_by.preview, show_progress="hidden", queue=False)


def _wire_copy_image(tab: Img2ImgTab, buttons: list[tuple[str, str, gr.Button]]) -> None:
    """"Copy image to:": the picture of one sub-tab into another's canvas (the painting left behind), and that
    sub-tab selected."""
    widgets = {SOURCE_IMG2IMG: tab.init_image, SOURCE_SKETCH: tab.sketch, SOURCE_INPAINT: tab.editor,
               SOURCE_INPAINT_SKETCH: tab.inpaint_sketch}

    def copier(source: str, target: str) -> Callable[..., dict[Any, Any]]:
        def copy(_selected: str, *pictures: Any) -> dict[Any, Any]:  # the button's sub-tab, not the selected one
            picture = current_picture(source, *pictures)
            if picture is None:
                gr.Warning(f"There is no image in {SUB_TAB_LABELS[source]} to copy.")
                return {}
            return {widgets[target]: picture, **select_source_updates(tab, target)}
        return copy

    for source, target, button in buttons:
        button.click(copier(source, target), inputs=_picture_inputs(tab),
                     outputs=[widgets[target], tab.source, tab.inpaint_options, tab.sub_tabs], show_progress="hidden")


def _wire_detect_size(tab: Img2ImgTab) -> None:
    sampling = tab.generation.sampling
    if sampling.detect_size is None:
        return

    def detect(source: str, image: Any, editor: Any, upload: Any, sketch: Any, inpaint_sketch: Any) -> tuple[Any, Any]:
        picture = current_picture(source, image, editor, upload, sketch, inpaint_sketch)
        if picture is None:
            gr.Warning("There is no image to take the size from.")
            return gr.skip(), gr.skip()
        return _round8(picture.width), _round8(picture.height)

    sampling.detect_size.click(detect, inputs=_picture_inputs(tab),
                 outputs=[sampling.width, sampling.height], show_progress="hidden")

