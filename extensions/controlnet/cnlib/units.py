"""A ControlNet request's units: A1111's unit objects (field names, value spellings, defaults) parsed into
`ControlUnit`s with clear messages for bad values, and the extension's settings ("ControlNet" section): how many
units a job takes and how many networks the model manager keeps loaded (A1111's names and defaults)."""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from PIL import Image

from modules.extensions.api import OptionSpec, SettingsContext, UserError

from . import ip_adapter, page
from .annotators import AnnotatorSession
from .preprocessors import PREPROCESSORS, find

MODULES = (*PREPROCESSORS, *ip_adapter.MODULES)
RESIZE_MODES = page.RESIZE_MODES
CONTROL_MODES = page.CONTROL_MODES
UNIT_COUNT = "control_net_unit_count"
CACHE_SIZE = "control_net_model_cache_size"
BLUR_SIGMA = "control_net_inpaint_blur_sigma"
DEFAULT_UNIT_COUNT = 3
MOST_UNITS = 10


def settings(ctx: SettingsContext) -> list[OptionSpec]:
    """The Settings tab's "ControlNet" section (A1111's keys, labels and defaults)."""
    return [
        OptionSpec(UNIT_COUNT, DEFAULT_UNIT_COUNT, "Multi-ControlNet: ControlNet unit number (requires restart)",
                   "ControlNet", "int", minimum=1, maximum=MOST_UNITS, step=1,
                   info="the unit tabs the page shows and the units a job accepts"),
        OptionSpec(CACHE_SIZE, 2, "Model cache size (requires restart)", "ControlNet", "int", minimum=1,
                   maximum=10, step=1, info="ControlNet networks kept loaded between jobs"),
        OptionSpec(BLUR_SIGMA, 7, "ControlNet inpainting Gaussian blur sigma", "ControlNet", "int", minimum=0,
                   maximum=64, step=1, info="inpaint_only: how far the mask grows and blurs in the final blend"),
    ]


def unit_count(options: Mapping[str, Any]) -> int:
    """The `control_net_unit_count` setting (its default where the settings do not have it)."""
    try:
        return max(1, min(MOST_UNITS, int(options.get(UNIT_COUNT, DEFAULT_UNIT_COUNT))))
    except (TypeError, ValueError):
        return DEFAULT_UNIT_COUNT


@dataclass
class ControlUnit:
    """One unit of a request, with A1111's field names and defaults. `picture` is the decoded control image;
    `processor_res` / `threshold_a` / `threshold_b` -1 mean the preprocessor's default."""

    enabled: bool = True
    module: str = "none"
    model: str = ""
    weight: float = 1.0
    picture: Image.Image | None = None
    resize_mode: str = "Crop and Resize"
    processor_res: int = 512
    threshold_a: float = -1.0
    threshold_b: float = -1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    control_mode: str = "Balanced"
    pixel_perfect: bool = False
    model_path: Path | None = None
    model_title: str = ""
    mask: Image.Image | None = None
    seed: int | None = None
    annotators: AnnotatorSession | None = field(default=None, repr=False)
    _tensors: dict[Any, Any] = field(default_factory=dict, repr=False)

    def active_at(self, step: int, total: int) -> bool:
        """A1111's guidance window: the unit acts while step / total is within [guidance_start, guidance_end]."""
        done = step / max(total, 1)
        return self.guidance_start <= done <= self.guidance_end

    def infotext(self) -> str:
        """The unit as the A1111 extension writes it into the infotext (a quoted `Key: value, ...` list)."""
        fields = {
            "Module": self.module, "Model": self.model_title, "Weight": _number(self.weight),
            "Resize Mode": self.resize_mode, "Processor Res": self.processor_res,
            "Threshold A": _number(self.threshold_a), "Threshold B": _number(self.threshold_b),
            "Guidance Start": _number(self.guidance_start), "Guidance End": _number(self.guidance_end),
            "Pixel Perfect": self.pixel_perfect, "Control Mode": self.control_mode,
        }
        return ", ".join(f"{key}: {value}" for key, value in fields.items())


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _choice(value: Any, choices: Sequence[str], what: str) -> str:
    """A1111 sends these as labels or as their index."""
    if isinstance(value, bool):
        raise UserError(f"ControlNet: {what} {value!r} is not one of: {', '.join(choices)}.")
    if isinstance(value, int) and 0 <= value < len(choices):
        return choices[value]
    text = str(value).strip()
    for choice in choices:
        if text.lower() == choice.lower():
            return choice
    raise UserError(f"ControlNet: {what} {value!r} is not one of: {', '.join(choices)}.")


def _float(raw: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = raw.get(key, default)
    try:
        number = float(default if value is None else value)
    except (TypeError, ValueError):
        raise UserError(f"ControlNet: {key} must be a number, got {value!r}.") from None
    if not low <= number <= high:
        raise UserError(f"ControlNet: {key} must be between {low} and {high}, got {number}.")
    return number


def decode_picture(value: Any) -> Image.Image | None:
    """A unit's image: base64 (with or without a data-URL prefix), `{"image": ...}`, or a PIL image."""
    if value is None or value == "":
        return None
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, Mapping):
        return decode_picture(value.get("image"))
    if not isinstance(value, str):
        raise UserError("ControlNet: the unit's image must be a base64-encoded picture.")
    data = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        picture = Image.open(io.BytesIO(base64.b64decode(data, validate=False)))
        picture.load()
    except (binascii.Error, OSError, ValueError) as exc:
        raise UserError(f"ControlNet: the unit's image is not a picture ({exc}).") from None
    return picture


def parse_unit(raw: Any, index: int) -> ControlUnit:
    """A unit from the API's dict (A1111's field names; `input_image` is an older spelling of `image`)."""
    if isinstance(raw, ControlUnit):
        return raw
    if not isinstance(raw, Mapping):
        raise UserError(f"ControlNet unit {index}: expected an object with the unit's fields, "
                        f"got {type(raw).__name__}.")
    preprocessor = find(str(raw.get("module") or "none"))
    module = preprocessor.name if preprocessor else ip_adapter.module_name(str(raw.get("module")))
    if module is None:
        raise UserError(f"ControlNet unit {index}: preprocessor {str(raw.get('module')).strip().lower()!r} is not "
                        f"available; available: {', '.join(MODULES)}.")
    start = _float(raw, "guidance_start", 0.0, 0.0, 1.0)
    end = _float(raw, "guidance_end", 1.0, 0.0, 1.0)
    if start > end:
        raise UserError(f"ControlNet unit {index}: guidance_start ({start}) is after guidance_end ({end}).")
    image = raw.get("image", raw.get("input_image"))
    mask = image.get("mask") if isinstance(image, Mapping) else None
    return ControlUnit(
        enabled=bool(raw.get("enabled", True)), module=module, model=str(raw.get("model") or "").strip(),
        weight=_float(raw, "weight", 1.0, 0.0, 2.0), picture=decode_picture(image),
        mask=decode_picture(mask or raw.get("mask_image") or raw.get("mask")),
        resize_mode=_choice(raw.get("resize_mode", "Crop and Resize"), RESIZE_MODES, "resize_mode"),
        processor_res=int(_float(raw, "processor_res", 512, -1, 4096)),
        threshold_a=_float(raw, "threshold_a", -1.0, -1e9, 1e9),
        threshold_b=_float(raw, "threshold_b", -1.0, -1e9, 1e9),
        guidance_start=start, guidance_end=end,
        control_mode=_choice(raw.get("control_mode", "Balanced"), CONTROL_MODES, "control_mode"),
        pixel_perfect=bool(raw.get("pixel_perfect", False)),
    )


def positional(args: list[Any]) -> dict[str, Any]:
    """A1111's `args`: one unit object per position."""
    return {"units": list(args)}


