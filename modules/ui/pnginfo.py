"""The PNG Info tab: drop an image, read its generation parameters, send them to txt2img / img2img / inpaint.

The image widget passes the uploaded file untouched (`type="filepath"`, no mode conversion) so PNG text chunks and
JPEG/WebP EXIF survive; `modules.images.read_infotext` reads them. The parameters are shown as A1111 shows them,
and kept in the session's state for the "send to" buttons (wired in `layout.py`, which knows the target tabs).
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

from modules.errors import CorruptFile
from modules.images import read_infotext

log = logging.getLogger(__name__)

TAB = "pnginfo"


@dataclass
class PngInfoTab:
    image: gr.Image
    info: gr.HTML
    parameters: gr.State
    send_txt2img: gr.Button
    send_img2img: gr.Button
    send_inpaint: gr.Button
    send_extras: gr.Button


def describe_image(image: Image.Image) -> tuple[str, str]:
    """(HTML listing the parameters and other text chunks, the infotext or "") of an opened image."""
    parameters = read_infotext(image) or ""
    sections = []
    if parameters:
        sections.append(("parameters", parameters))
    for key, value in image.info.items():
        if key in ("parameters", "exif", "icc_profile") or not isinstance(value, str) or not value.strip():
            continue
        sections.append((str(key), value))
    if not sections:
        return "<div class='pnginfo'><p>This image holds no generation parameters.</p></div>", ""
    body = "".join(
        f"<div class='pnginfo-item'><p><b>{html.escape(key)}</b></p><p>"
        f"{'<br>'.join(html.escape(line) for line in value.split(chr(10)))}</p></div>"
        for key, value in sections
    )
    return f"<div class='pnginfo'>{body}</div>", parameters


def describe_file(path: str | Path | None) -> tuple[str, str]:
    """`describe_image` for an uploaded file; an unreadable file gives a message instead of an exception."""
    if not path:
        return "", ""
    try:
        with Image.open(path) as image:
            return describe_image(image)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        message = str(CorruptFile(f"Cannot read the image: {error}"))
        return f"<div class='pnginfo error'><p>{html.escape(message)}</p></div>", ""


def build_pnginfo_tab() -> PngInfoTab:
    """Create the tab inside the main `gr.Tabs`; reading happens on upload (not on programmatic updates)."""
    with gr.Tab("PNG Info", id=TAB, elem_id=f"tab_{TAB}"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                image = gr.Image(label="Source", type="filepath", image_mode=None, format="png", height=480,
                                 sources=["upload", "clipboard"], elem_id="pnginfo_image")
            with gr.Column(scale=1):
                info = gr.HTML("", elem_id="pnginfo_generation_info", elem_classes=["infotext"])
                parameters = gr.State("")
                with gr.Row():
                    send_txt2img = gr.Button("Send to txt2img", elem_id="pnginfo_send_to_txt2img", size="sm")
                    send_img2img = gr.Button("Send to img2img", elem_id="pnginfo_send_to_img2img", size="sm")
                    send_inpaint = gr.Button("Send to inpaint", elem_id="pnginfo_send_to_inpaint", size="sm")
                    send_extras = gr.Button("Send to extras", elem_id="pnginfo_send_to_extras", size="sm")
    tab = PngInfoTab(image, info, parameters, send_txt2img, send_img2img, send_inpaint, send_extras)

    image.upload(describe_file, inputs=image, outputs=[info, parameters], show_progress="hidden")
    image.clear(lambda: ("", ""), outputs=[info, parameters], show_progress="hidden", queue=False)
    return tab


def load_image(path: str | None) -> Image.Image | None:
    """The picture of the PNG Info widget as an RGB image (for "send to img2img/inpaint")."""
    if not path:
        return None
    with Image.open(path) as image:
        return image.convert("RGB")
