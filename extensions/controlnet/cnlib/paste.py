"""Pasting an infotext into the ControlNet unit tabs (the extension API's `InfotextPaste`, API 1.5).

The extension writes one key per enabled unit, as the A1111 extension does:

    ControlNet 0: "Module: canny, Model: name [hash], Weight: 1, Resize Mode: Crop and Resize, Processor Res: 512,
                   Threshold A: 100, Threshold B: 200, Guidance Start: 0, Guidance End: 1, Pixel Perfect: False,
                   Control Mode: Balanced"

Pasting it enables unit 0 and sets its preprocessor, model, weight, steps, modes and the preprocessor's sliders
(shown, labelled and ranged for that preprocessor; -1 or a value outside the slider's range gives its default). The
control image is not in the infotext (as in A1111): the unit keeps the one it has. Units the infotext does not name
keep what they had. A model is matched by its title, else by its name without the hash; a model, preprocessor or
value that cannot be used here is left unchanged, with a warning naming it. Keys are matched case-insensitively.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Sequence

from modules.extensions.api import PasteContext

from .page import CONTROL_MODES, RESIZE_MODES
from .preprocessors import Preprocessor, Slider, find

UNIT_KEY = re.compile(r"ControlNet (\d+)")
_PAIR = re.compile(r"\s*([A-Za-z][A-Za-z /]*?)\s*:\s*([^,]*)(?:,|$)")
NUMBERS = {  # infotext field -> (control, lowest, highest)
    "weight": ("weight", 0.0, 2.0),
    "guidance start": ("guidance_start", 0.0, 1.0),
    "guidance end": ("guidance_end", 0.0, 1.0),
}


def unit_fields(text: str) -> dict[str, str]:
    """`"Module: canny, Model: x [hash], ..."` as {lower-case field: value}."""
    return {match[1].strip().lower(): match[2].strip() for match in _PAIR.finditer(text) if match[1].strip()}


def _choice(value: str, choices: Sequence[str]) -> str | None:
    return next((choice for choice in choices if choice.lower() == value.strip().lower()), None)


def model_title(value: str, titles: Sequence[str]) -> str | None:
    """The model dropdown's title for a written `name [hash]`: the same title, else the same name (any hash)."""
    wanted = value.strip()
    if wanted in titles:
        return wanted
    name = wanted.split(" [", 1)[0].strip().lower()
    return next((title for title in titles if title.split(" [", 1)[0].strip().lower() == name), None)


def _slider_update(slider: Slider | None, text: str | None) -> Any:
    """The update of one preprocessor slider: hidden when the preprocessor has none, else shown as it needs it, with
    the written value (its default for -1, a missing value or one outside its range)."""
    import gradio as gr

    if slider is None:
        return gr.update(visible=False)
    value: float = slider.value
    try:
        written = float(text) if text is not None else -1.0
    except ValueError:
        written = -1.0
    if slider.minimum <= written <= slider.maximum:
        value = written
    return gr.update(visible=True, label=slider.name, minimum=slider.minimum, maximum=slider.maximum,
                     step=slider.step, value=value)


def _bool(text: str) -> bool | None:
    lowered = text.strip().lower()
    return True if lowered in ("true", "1", "yes") else False if lowered in ("false", "0", "no") else None


def _module_values(index: int, fields: Mapping[str, str], ctx: PasteContext) -> dict[str, Any]:
    """The preprocessor and its sliders (shown, labelled and ranged for it) of unit `index`."""
    if "module" not in fields:
        return {}
    preprocessor: Preprocessor | None = find(fields["module"])
    if preprocessor is None:
        ctx.warn(f"ControlNet unit {index}: preprocessor {fields['module']!r} is not available here; the "
                 "preprocessor was not changed.")
        return {}
    prefix = f"units/{index}_"
    values: dict[str, Any] = {f"{prefix}module": preprocessor.name}
    for control, slider, key in (("processor_res", preprocessor.resolution, "processor res"),
                                 ("threshold_a", preprocessor.a, "threshold a"),
                                 ("threshold_b", preprocessor.b, "threshold b")):
        values[f"{prefix}{control}"] = _slider_update(slider, fields.get(key))
    return values


def _unit_values(index: int, fields: Mapping[str, str], titles: Sequence[str], ctx: PasteContext) -> dict[str, Any]:
    """The values of unit `index`'s controls (`units/<index>_<field>`) from its written fields."""
    prefix = f"units/{index}_"
    values: dict[str, Any] = {f"{prefix}enabled": True, **_module_values(index, fields, ctx)}
    if "model" in fields and fields["model"].lower() != "none":
        title = model_title(fields["model"], titles)
        if title is None:
            ctx.warn(f"ControlNet unit {index}: model {fields['model']!r} is not in the ControlNet model folder; the "
                     "model was not changed.")
        else:
            values[f"{prefix}model"] = title
    for key, (control, low, high) in NUMBERS.items():
        if key in fields:
            try:
                number = float(fields[key])
            except ValueError:
                number = float("nan")
            if low <= number <= high:
                values[f"{prefix}{control}"] = number
            else:
                ctx.warn(f"ControlNet unit {index}: {key} {fields[key]!r} is not a number from {low} to {high}; it "
                         "was not changed.")
    for key, control, choices in (("resize mode", "resize_mode", RESIZE_MODES),
                                  ("control mode", "control_mode", CONTROL_MODES)):
        if key in fields:
            choice = _choice(fields[key], choices)
            if choice is None:
                ctx.warn(f"ControlNet unit {index}: {key} {fields[key]!r} is not one of: {', '.join(choices)}.")
            else:
                values[f"{prefix}{control}"] = choice
    if "pixel perfect" in fields and _bool(fields["pixel perfect"]) is not None:
        values[f"{prefix}pixel_perfect"] = _bool(fields["pixel perfect"])
    return values


def read_pasted(ctx: PasteContext, count: int, titles: Callable[[], list[str]]) -> dict[str, Any]:
    """`InfotextPaste.read`: the unit controls that the pasted `ControlNet <n>` keys set (units 0 to count-1)."""
    values: dict[str, Any] = {}
    known: list[str] | None = None
    for key, text in ctx.params.items():
        match = UNIT_KEY.fullmatch(key)
        if match is None:
            continue
        index = int(match[1])
        if index >= count:
            ctx.warn(f"{key}: this page has {count} ControlNet units; that unit was not pasted.")
            continue
        if known is None:
            known = titles()
        values.update(_unit_values(index, unit_fields(text), known, ctx))
    return values
