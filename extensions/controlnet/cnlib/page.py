"""The page's ControlNet controls: one tab per unit inside the extension's "ControlNet" accordion (txt2img and
img2img), laid out like the A1111 extension's unit tabs.

Each unit has Enable, Pixel Perfect, the control image and an optional mask for inpaint_only (upload or paste; in
img2img they show, and count, only with "Upload independent control image" ticked, as in A1111: unticked, the unit
takes the img2img image and its mask), a preview of the preprocessed image ("Preview" runs the preprocessor),
Preprocessor, Model (the files of models/ControlNet as "name [hash]", with a refresh button), Control Weight,
Starting/Ending Control Step, the preprocessor's resolution and thresholds (shown, labelled and ranged as the
chosen preprocessor needs them), Control Mode and Resize Mode.

The controls are one `Combined` value, `units`: when a job is sent, `units_from_page` makes from them the list of
unit objects an API client sends in `alwayson_scripts.controlnet.args` (A1111's field names), so the page and the
API reach the same code. Trailing disabled units without a model are left out (a page job without ControlNet sends
`[]`); a disabled unit with a model travels, so the X/Y/Z plot's "[ControlNet] Enabled" axis can turn it on.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping, Sequence

from PIL import Image

from modules.extensions.api import Combined, UiBuilder, UserError

from .preprocessors import RESOLUTION, Slider, find

RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
NO_MODEL = "None"
DEFAULT_A = Slider("Threshold A", 64, 0, 255)
DEFAULT_B = Slider("Threshold B", 64, 0, 255)

Preview = Callable[[Image.Image, str, float, float, float], Image.Image]
"""(picture, module, resolution, threshold a, threshold b) -> the preprocessed picture."""


def units_from_page(count: int, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The API's unit objects from the controls' values (`<index>_<field>`); trailing disabled units without a
    model left out.
    A threshold the preprocessor has no slider for is sent as -1 (its default), as an API client leaves it."""
    units = []
    for index in range(count):
        def value(field: str, default: Any, index: int = index) -> Any:
            found = values.get(f"{index}_{field}")
            return default if found is None else found

        module = str(value("module", "none"))
        independent = bool(value("independent", True))  # img2img: unticked, the unit takes the img2img image
        preprocessor = find(module)
        model = str(value("model", NO_MODEL))
        units.append({
            "enabled": bool(value("enabled", False)),
            "module": module,
            "model": "" if model == NO_MODEL else model,
            "weight": float(value("weight", 1.0)),
            "image": value("image", None) if independent else None,
            "resize_mode": str(value("resize_mode", "Crop and Resize")),
            "processor_res": int(value("processor_res", 512)),
            "threshold_a": float(value("threshold_a", -1)) if preprocessor and preprocessor.a else -1.0,
            "threshold_b": float(value("threshold_b", -1)) if preprocessor and preprocessor.b else -1.0,
            "guidance_start": float(value("guidance_start", 0.0)),
            "guidance_end": float(value("guidance_end", 1.0)),
            "pixel_perfect": bool(value("pixel_perfect", False)),
            "control_mode": str(value("control_mode", "Balanced")),
        })
        mask = value("mask", None)
        if mask is not None and independent:
            units[-1]["mask_image"] = mask  # A1111's field for the unit's own inpaint mask
    while units and not units[-1]["enabled"] and not units[-1]["model"]:
        units.pop()
    return units


def slider_updates(module: str) -> list[Any]:
    """Updates of the resolution and threshold sliders for a preprocessor: shown with its labels, ranges and
    defaults, or hidden when it has no such setting."""
    import gradio as gr

    preprocessor = find(module)
    updates = []
    for slider in ((preprocessor.resolution, preprocessor.a, preprocessor.b) if preprocessor else (None,) * 3):
        if slider is None:
            updates.append(gr.update(visible=False))
        else:
            updates.append(gr.update(visible=True, label=slider.name, minimum=slider.minimum,
                                     maximum=slider.maximum, step=slider.step, value=slider.value))
    return updates


def run_preview(preview: Preview, image: Image.Image | None, module: str, resolution: float, a: float,
                b: float) -> Any:
    """The preview button: the preprocessed control image, or a message."""
    import gradio as gr

    if image is None:
        gr.Warning("ControlNet: upload a control image to preview its preprocessing.")
        return None
    preprocessor = find(module)
    a = a if preprocessor is not None and preprocessor.a else -1
    b = b if preprocessor is not None and preprocessor.b else -1
    try:
        return preview(image, module, resolution, a, b)
    except UserError as error:
        raise gr.Error(str(error), print_exception=False) from error


def show_uploads(independent: bool) -> list[Any]:
    """img2img's "Upload independent control image": the unit's image and mask uploads show only when ticked
    (unticked, the unit takes the img2img image and mask)."""
    import gradio as gr

    return [gr.update(visible=bool(independent))] * 2


def _unit(builder: UiBuilder, index: int, modules: Sequence[str], titles: Callable[[], list[str]],
          preview: Preview) -> dict[str, Any]:
    import gradio as gr

    def eid(name: str) -> str:
        return builder.elem_id(f"unit{index}_{name}")

    with gr.Row():
        enabled = gr.Checkbox(False, label="Enable", elem_id=eid("enabled"))
        pixel_perfect = gr.Checkbox(False, label="Pixel Perfect", elem_id=eid("pixel_perfect"))
    independent = None
    if builder.is_img2img:
        independent = gr.Checkbox(False, label="Upload independent control image", elem_id=eid("independent"))
    with gr.Row():
        image = gr.Image(label="Control image", type="pil", image_mode="RGBA", sources=["upload", "clipboard"],
                         height=256, visible=not builder.is_img2img, elem_id=eid("image"))
        mask = gr.Image(label="Mask (inpaint_only: white = repaint; optional)", type="pil", image_mode="L",
                        sources=["upload", "clipboard"], height=256, visible=not builder.is_img2img,
                        elem_id=eid("mask"))
        shown = gr.Image(label="Preprocessor Preview", type="pil", interactive=False, height=256,
                         elem_id=eid("preview"))
    with gr.Row():
        module = gr.Dropdown(list(modules), value="none", label="Preprocessor", elem_id=eid("module"))
        run = gr.Button("Preview", elem_id=eid("preview_button"), scale=0, min_width=90)
        model = gr.Dropdown([NO_MODEL, *titles()], value=NO_MODEL, label="Model", elem_id=eid("model"))
        refresh = gr.Button("\U0001f504", elem_id=eid("refresh"), scale=0, min_width=40)
    weight = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Control Weight", elem_id=eid("weight"))
    with gr.Row():
        start = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Starting Control Step", elem_id=eid("start"))
        end = gr.Slider(0.0, 1.0, value=1.0, step=0.01, label="Ending Control Step", elem_id=eid("end"))
    resolution = gr.Slider(64, 2048, value=512, step=1, label=RESOLUTION, visible=False, elem_id=eid("resolution"))
    with gr.Row():
        threshold_a = gr.Slider(DEFAULT_A.minimum, DEFAULT_A.maximum, value=DEFAULT_A.value, step=1,
                                label=DEFAULT_A.name, visible=False, elem_id=eid("threshold_a"))
        threshold_b = gr.Slider(DEFAULT_B.minimum, DEFAULT_B.maximum, value=DEFAULT_B.value, step=1,
                                label=DEFAULT_B.name, visible=False, elem_id=eid("threshold_b"))
    control_mode = gr.Radio(list(CONTROL_MODES), value="Balanced", label="Control Mode", elem_id=eid("control_mode"))
    resize_mode = gr.Radio(list(RESIZE_MODES), value="Crop and Resize", label="Resize Mode",
                           elem_id=eid("resize_mode"))

    # `input`: the user's choice only; a pasted infotext sets the module and its sliders together (cnlib/paste.py)
    module.input(slider_updates, inputs=module, outputs=[resolution, threshold_a, threshold_b],
                 show_progress="hidden")
    run.click(partial(run_preview, preview), inputs=[image, module, resolution, threshold_a, threshold_b],
              outputs=shown, show_progress="minimal")
    refresh.click(lambda: gr.update(choices=[NO_MODEL, *titles()]), outputs=model, show_progress="hidden")
    controls = {"independent": independent} if independent is not None else {}
    if independent is not None:
        independent.change(show_uploads, inputs=independent, outputs=[image, mask], show_progress="hidden")
    return {**controls, "enabled": enabled, "image": image, "mask": mask, "module": module, "model": model,
            "weight": weight, "guidance_start": start, "guidance_end": end, "processor_res": resolution,
            "threshold_a": threshold_a, "threshold_b": threshold_b, "pixel_perfect": pixel_perfect,
            "control_mode": control_mode, "resize_mode": resize_mode}


def build(builder: UiBuilder, count: int, modules: Sequence[str], titles: Callable[[], list[str]],
          preview: Preview) -> Combined:
    """Draw the unit tabs (in the extension's accordion) and return the `units` value made from them."""
    import gradio as gr

    controls: dict[str, Any] = {}
    with gr.Tabs(elem_id=builder.elem_id("units")):
        for index in range(count):
            with gr.Tab(f"ControlNet Unit {index}", elem_id=builder.elem_id(f"unit{index}_tab")):
                drawn = _unit(builder, index, modules, titles, preview)
            controls.update({f"{index}_{name}": component for name, component in drawn.items()})
    return Combined(controls, partial(units_from_page, count), value=[], label="ControlNet units")
