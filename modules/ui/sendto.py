"""The "send to" buttons: a picture and its parameters go from one tab to another.

From a results panel (txt2img or img2img) the selected picture goes to img2img, to the inpaint canvas, to PNG Info or
to Extras; from PNG Info the parameters (and the picture) go to txt2img, img2img or inpaint, and the picture to
Extras; from the Gallery the selected file goes wherever PNG Info's buttons send, and to PNG Info. Parameters are
applied
like a paste (`generation.paste_updates`): only what the infotext states changes, and A1111's `send_seed` /
`send_size` options decide whether seeds and size travel too. The target tab is selected afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr
from gradio.blocks import Block
from PIL import Image

from modules.ui.bind import named_values
from modules.ui.extras import SINGLE, ExtrasTab
from modules.ui.gallery import GalleryTab
from modules.ui.generation import GenerationTab, paste_updates
from modules.ui.img2img import SOURCE_IMG2IMG, SOURCE_INPAINT, Img2ImgTab, select_source_updates
from modules.ui.pnginfo import PngInfoTab, describe_file, describe_image, load_image
from modules.ui.results import ResultPanel, gallery_images, selected_image, selected_index

if TYPE_CHECKING:
    from modules.app import App


@dataclass
class SendTargets:
    """Everything a "send to" handler may update."""

    main_tabs: gr.Tabs
    txt2img: GenerationTab
    img2img: Img2ImgTab
    pnginfo: PngInfoTab
    extras: ExtrasTab | None = None


def image_to_extras(targets: SendTargets, image: Image.Image) -> dict[Any, Any]:
    """Put `image` into the Extras tab's Single Image and select that tab."""
    tab = targets.extras
    assert tab is not None
    return {tab.image: image, tab.source: SINGLE, tab.sub_tabs: gr.Tabs(selected=SINGLE),
            targets.main_tabs: gr.Tabs(selected="extras")}


def _extras_outputs(targets: SendTargets) -> list[Any]:
    tab = targets.extras
    assert tab is not None
    return [tab.image, tab.source, tab.sub_tabs, targets.main_tabs]


def _send_flags(app: "App") -> dict[str, bool]:
    settings = app.settings.get()
    return {"send_seed": bool(settings["send_seed"]), "send_size": bool(settings["send_size"])}


def parameters_to_tab(app: "App", target: GenerationTab, text: str, data: dict) -> dict[Any, Any]:
    """Paste updates for `target` from infotext `text`, given the raw input dict holding its current values."""
    if not text:
        return {}
    return paste_updates(app, text, target.inputs, named_values(target.inputs, data), scripts=target.scripts,
                         **_send_flags(app))


def image_to_img2img(targets: SendTargets, image: Image.Image, source: str) -> dict[Any, Any]:
    """Put `image` into the img2img canvas (or the inpaint editor) and select that tab and sub-tab."""
    tab = targets.img2img
    updates: dict[Any, Any] = {tab.editor: image} if source == SOURCE_INPAINT else {tab.init_image: image}
    updates.update(select_source_updates(tab, source))
    updates[targets.main_tabs] = gr.Tabs(selected="img2img")
    return updates


def picture_to_img2img(app: "App", targets: SendTargets, image: Image.Image, text: str, source: str,
                       data: dict) -> dict[Any, Any]:
    """Send a picture and the parameters of its infotext `text` to img2img (or inpaint, by `source`)."""
    updates = parameters_to_tab(app, targets.img2img.generation, text, data)
    updates.update(image_to_img2img(targets, image, source))
    return updates


def _img2img_outputs(targets: SendTargets) -> list[Any]:
    tab = targets.img2img
    return [*tab.generation.paste_outputs(), tab.init_image, tab.editor, tab.source, tab.inpaint_options,
            tab.sub_tabs, targets.main_tabs]


def _from_results(app: "App", panel: ResultPanel, targets: SendTargets, source: str) -> Callable[[dict], dict]:
    def send(data: dict) -> dict:
        found = selected_image(data[panel.result], data[panel.selected])
        if found is None:
            gr.Warning("There is no picture to send: generate one first.")
            return {}
        image, text = found
        return picture_to_img2img(app, targets, image, text, source, data)

    return send


def _results_to_pnginfo(panel: ResultPanel, targets: SendTargets) -> Callable[[dict], dict]:
    def send(data: dict) -> dict:
        result, index = data[panel.result], selected_index(data[panel.result], data[panel.selected])
        if result is None or index is None:
            gr.Warning("There is no picture to send: generate one first.")
            return {}
        image = gallery_images(result)[index]
        info_html, parameters = describe_image(image)
        png = targets.pnginfo
        return {png.image: image, png.info: info_html, png.parameters: parameters,
                targets.main_tabs: gr.Tabs(selected="pnginfo")}

    return send


def wire_results_panel(app: "App", panel: ResultPanel, targets: SendTargets) -> None:
    """The three buttons under a gallery."""
    img2img_inputs: set[Block] = {panel.result, panel.selected, *targets.img2img.generation.inputs.values()}
    for button, source in ((panel.send_img2img, SOURCE_IMG2IMG), (panel.send_inpaint, SOURCE_INPAINT)):
        button.click(_from_results(app, panel, targets, source), inputs=img2img_inputs,
                     outputs=_img2img_outputs(targets), show_progress="hidden")
    if panel.send_extras is not None and targets.extras is not None:
        def to_extras(data: dict) -> dict:
            result, index = data[panel.result], selected_index(data[panel.result], data[panel.selected])
            if result is None or index is None:
                gr.Warning("There is no picture to send: generate one first.")
                return {}
            return image_to_extras(targets, gallery_images(result)[index])

        panel.send_extras.click(to_extras, inputs={panel.result, panel.selected}, outputs=_extras_outputs(targets),
                                show_progress="hidden")
    png = targets.pnginfo
    panel.send_pnginfo.click(_results_to_pnginfo(panel, targets), inputs={panel.result, panel.selected},
                             outputs=[png.image, png.info, png.parameters, targets.main_tabs],
                             show_progress="hidden")


def wire_extras_results(app: "App", targets: SendTargets) -> None:
    """"Send to img2img" / "Send to inpaint" under the Extras results: the selected (else the first) picture, with
    the generation parameters it carries (Extras keeps the source's)."""
    extras = targets.extras
    if extras is None or extras.pictures is None or extras.selected is None:
        return
    pictures_state, selected_state = extras.pictures, extras.selected

    def sender(source: str) -> Callable[[dict], dict]:
        def send(data: dict) -> dict:
            pictures, selected = data[pictures_state] or [], data[selected_state]
            if not pictures:
                gr.Warning("There is no picture to send: upscale one first.")
                return {}
            image = pictures[selected if isinstance(selected, int) and 0 <= selected < len(pictures) else 0]
            return picture_to_img2img(app, targets, image, image.info.get("parameters") or "", source, data)
        return send

    inputs: set[Block] = {pictures_state, selected_state, *targets.img2img.generation.inputs.values()}
    for button, source in ((extras.send_img2img, SOURCE_IMG2IMG), (extras.send_inpaint, SOURCE_INPAINT)):
        if button is not None:
            button.click(sender(source), inputs=inputs, outputs=_img2img_outputs(targets), show_progress="hidden")


def _no_parameters() -> dict:
    gr.Warning("This image holds no generation parameters to send.")
    return {}


def wire_pnginfo(app: "App", targets: SendTargets) -> None:
    """PNG Info's buttons: parameters to txt2img; parameters and picture to img2img or inpaint."""
    png, txt2img = targets.pnginfo, targets.txt2img

    def to_txt2img(data: dict) -> dict:
        text = data[png.parameters]
        if not text:
            return _no_parameters()
        return {**parameters_to_tab(app, txt2img, text, data), targets.main_tabs: gr.Tabs(selected="txt2img")}

    png.send_txt2img.click(to_txt2img, inputs={png.parameters, *txt2img.inputs.values()},
                           outputs=[*txt2img.paste_outputs(), targets.main_tabs], show_progress="hidden")

    def to_img2img(source: str) -> Callable[[dict], dict]:
        def send(data: dict) -> dict:
            image = load_image(data[png.image])
            if image is None:
                gr.Warning("Drop an image into PNG Info first.")
                return {}
            return picture_to_img2img(app, targets, image, data[png.parameters], source, data)

        return send

    inputs: set[Block] = {png.image, png.parameters, *targets.img2img.generation.inputs.values()}
    for button, source in ((png.send_img2img, SOURCE_IMG2IMG), (png.send_inpaint, SOURCE_INPAINT)):
        button.click(to_img2img(source), inputs=inputs, outputs=_img2img_outputs(targets), show_progress="hidden")

    if targets.extras is not None:
        def to_extras(path: str | None) -> dict:
            if not path:
                gr.Warning("Drop an image into PNG Info first.")
                return {}
            with Image.open(path) as opened:
                opened.load()
                return image_to_extras(targets, opened.copy())  # a copy keeps the PNG's text (its infotext)

        png.send_extras.click(to_extras, inputs=png.image, outputs=_extras_outputs(targets), show_progress="hidden")



def _gallery_choice(app: "App", gallery: GalleryTab, data: dict) -> tuple[str, str] | None:
    """(file path, infotext) of the Gallery's selected picture; None (with a warning) when none or its file is gone."""
    entry = app.gallery.get(int(data[gallery.selected])) if data[gallery.selected] is not None else None
    if entry is None:
        gr.Warning("Select a picture in the gallery first.")
        return None
    path = entry.file(app.gallery.data_dir)
    if not path.is_file():
        gr.Warning(f"{entry.path} is no longer there: rebuild the index.")
        return None
    return str(path), entry.infotext


def wire_gallery(app: "App", gallery: GalleryTab, targets: SendTargets) -> None:
    """The Gallery's buttons: the selected file's parameters to txt2img; parameters and picture to img2img or
    inpaint; the file to PNG Info and the picture (with its text chunks) to Extras (`_wire_gallery_files`)."""
    txt2img = targets.txt2img

    def to_txt2img(data: dict) -> dict:
        found = _gallery_choice(app, gallery, data)
        if found is None:
            return {}
        if not found[1]:
            return _no_parameters()
        return {**parameters_to_tab(app, txt2img, found[1], data), targets.main_tabs: gr.Tabs(selected="txt2img")}

    gallery.send_txt2img.click(to_txt2img, inputs={gallery.selected, *txt2img.inputs.values()},
                               outputs=[*txt2img.paste_outputs(), targets.main_tabs], show_progress="hidden")

    def to_img2img(source: str) -> Callable[[dict], dict]:
        def send(data: dict) -> dict:
            found = _gallery_choice(app, gallery, data)
            if found is None:
                return {}
            image = load_image(found[0])
            if image is None:
                return {}
            return picture_to_img2img(app, targets, image, found[1], source, data)

        return send

    inputs: set[Block] = {gallery.selected, *targets.img2img.generation.inputs.values()}
    for button, source in ((gallery.send_img2img, SOURCE_IMG2IMG), (gallery.send_inpaint, SOURCE_INPAINT)):
        button.click(to_img2img(source), inputs=inputs, outputs=_img2img_outputs(targets), show_progress="hidden")
    _wire_gallery_files(app, gallery, targets)


def _wire_gallery_files(app: "App", gallery: GalleryTab, targets: SendTargets) -> None:
    png = targets.pnginfo

    def to_pnginfo(data: dict) -> dict:
        found = _gallery_choice(app, gallery, data)
        if found is None:
            return {}
        info_html, parameters = describe_file(found[0])
        return {png.image: found[0], png.info: info_html, png.parameters: parameters,
                targets.main_tabs: gr.Tabs(selected="pnginfo")}

    gallery.send_pnginfo.click(to_pnginfo, inputs={gallery.selected},
                               outputs=[png.image, png.info, png.parameters, targets.main_tabs], show_progress="hidden")

    if targets.extras is not None:
        def to_extras(data: dict) -> dict:
            found = _gallery_choice(app, gallery, data)
            if found is None:
                return {}
            with Image.open(found[0]) as opened:
                opened.load()
                return image_to_extras(targets, opened.copy())  # a copy keeps the file's text (its infotext)

        gallery.send_extras.click(to_extras, inputs={gallery.selected}, outputs=_extras_outputs(targets),
                                  show_progress="hidden")
