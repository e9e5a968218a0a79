"""`POST /controlnet/detect`: the preprocessors' output for base64 pictures, with A1111's body and answer."""

from __future__ import annotations

import base64
import io
from typing import Any

from pydantic import BaseModel

from modules.extensions.api import UserError

from . import ip_adapter
from .annotators import AnnotatorFolders, AnnotatorSession
from .control_image import preprocess
from .preprocessors import Extras, find
from .units import MODULES, decode_picture


class NotAvailable(UserError):
    """A preprocessor the A1111 extension has and this one does not (A1111 answers 422 too)."""

    http_status = 422


class DetectRequest(BaseModel):
    """`POST /controlnet/detect`, A1111's body (thresholds -1: the preprocessor's default)."""

    controlnet_module: str = "none"
    controlnet_input_images: list[str] = []
    controlnet_processor_res: int = 512
    controlnet_threshold_a: float = -1
    controlnet_threshold_b: float = -1
    controlnet_masks: list[str] = []


def detect(body: DetectRequest, folders: AnnotatorFolders | None = None) -> dict[str, Any]:
    """The preprocessor's output for each picture, as base64 PNGs (A1111's `{"images": [...], "info": "Success"}`);
    `controlnet_masks` (one per picture) are inpaint_only's masks. Annotator models are loaded once for the call."""
    preprocessor = find(body.controlnet_module)
    if preprocessor is None and not ip_adapter.is_module(body.controlnet_module):
        raise NotAvailable(f"ControlNet: preprocessor {body.controlnet_module!r} is not available; available: "
                           f"{', '.join(MODULES)}.")
    if not body.controlnet_input_images:
        raise NotAvailable("ControlNet: no image selected (controlnet_input_images is empty).")
    masks_missing = len(body.controlnet_masks) != len(body.controlnet_input_images)
    if preprocessor is not None and preprocessor.name == "inpaint_only" and masks_missing:
        raise NotAvailable("ControlNet: preprocessor inpaint_only requires `controlnet_masks`, one per image.")
    session = AnnotatorSession(folders or AnnotatorFolders(), device=annotator_device())
    images = []
    for index, data in enumerate(body.controlnet_input_images):
        picture = decode_picture(data)
        if picture is None:
            raise NotAvailable("ControlNet: an entry of controlnet_input_images is empty.")
        mask = decode_picture(body.controlnet_masks[index]) if index < len(body.controlnet_masks) else None
        result = preprocess(picture, body.controlnet_module, body.controlnet_processor_res,
                            body.controlnet_threshold_a, body.controlnet_threshold_b,
                            Extras(mask=mask, annotators=session))
        buffer = io.BytesIO()
        result.save(buffer, format="PNG")
        images.append(base64.b64encode(buffer.getvalue()).decode())
    session.release()
    return {"images": images, "info": "Success"}


def annotator_device() -> str:
    """Where detect and the page's preview run annotators: the GPU when there is one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


