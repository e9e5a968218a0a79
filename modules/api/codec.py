"""Images in API JSON: base64 text in, base64 PNG (with the infotext embedded) out.

`decode_image` accepts plain base64 or a `data:image/...;base64,` URL; anything else (an http URL, text that is
not base64 or not an image) is an `InvalidImage` (400) naming the field. `encode_png` writes PNG with the infotext
in the `parameters` text chunk (when `enable_pnginfo` is on), so PNG Info and A1111 tools read it back.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
from typing import Mapping

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from modules.errors import InvalidRequest

log = logging.getLogger(__name__)

_DATA_URL_PREFIX = "data:"


class InvalidImage(InvalidRequest):
    """A request field that should hold a base64 image holds something else."""

    http_status = 400


def decode_image(data: str, field: str) -> Image.Image:
    """The image in `data` (base64, optionally a data: URL), fully loaded; InvalidImage names `field` otherwise."""
    text = (data or "").strip()
    if not text:
        raise InvalidImage(f"{field} is empty: send a base64-encoded PNG, JPEG or WebP image.")
    if text.startswith(("http://", "https://")):
        raise InvalidImage(f"{field} is a URL; this server does not download images. Send the image as base64.")
    if text.startswith(_DATA_URL_PREFIX):
        header, comma, payload = text.partition(",")
        if not comma or ";base64" not in header:
            raise InvalidImage(f"{field} is a data: URL without base64 content (expected data:image/png;base64,...).")
        text = payload
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)  # line-wrapped base64 is fine
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f"{field} is not valid base64 ({exc}).") from None
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"{field} does not hold a readable image ({type(exc).__name__}: {exc}).") from None
    return image


def encode_png(image: Image.Image, infotext: str | None = None, extra_text: Mapping[str, str] | None = None) -> str:
    """Base64 PNG of `image`; `infotext` (when given) goes into the `parameters` text chunk, `extra_text` into
    chunks of its own (the Extras tab's `extras`)."""
    pnginfo = None
    if infotext or extra_text:
        pnginfo = PngImagePlugin.PngInfo()
        if infotext:
            pnginfo.add_text("parameters", infotext)
        for key, value in (extra_text or {}).items():
            pnginfo.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=pnginfo)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
