"""The X/Y/Z plot axes ControlNet adds (the extension API's `PlotAxis`, API 1.5), named as the A1111 extension names
them: "[ControlNet] Enabled", "Model", "Weight", "Guidance Start", "Guidance End", "Control Mode", "Resize Mode",
"Preprocessor", "Pre Resolution", "Pre Threshold A" and "Pre Threshold B".

Each sets one field of unit 0 of the request (`extension_args["controlnet"]["units"][0]`, A1111's field names), so
a cell runs exactly the job an API client would send with that value. Before the first cell every value is checked
as the job will check it (the unit parsed with the value, a model looked up in the model folders) and spelled as
the unit's dropdowns spell it. Unit 0 must be there; while it is disabled the other axes change nothing (plot them
with "Enabled" to compare), and "Enabled" needs its model.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from modules.extensions.api import GenerationRequest, PlotAxis, UserError

from .page import CONTROL_MODES, RESIZE_MODES

KEY = "controlnet"
PREFIX = "[ControlNet] "
FindModel = Callable[[str], tuple[Any, str]]
"""A model name -> (path, "name [hash]"); UserError when it is not in the model folders."""
ParseUnit = Callable[[Any, int], Any]
"""A unit dict -> the parsed unit (UserError for a bad field)."""


def _units(request: GenerationRequest) -> list[Any]:
    args = request.extension_args.get(KEY)
    units = args.get("units") if isinstance(args, Mapping) else None
    return list(units) if isinstance(units, (list, tuple)) else []


def with_unit0(request: GenerationRequest, field: str, value: Any) -> GenerationRequest:
    """`request` with unit 0's `field` set to `value` (a unit 0 made when there is none)."""
    units = _units(request)
    first = dict(units[0]) if units and isinstance(units[0], Mapping) else {}
    first[field] = value
    args = {**request.extension_args.get(KEY, {}), "units": [first, *units[1:]]}
    return request.with_changes(extension_args={**request.extension_args, KEY: args})


def _unit0(request: GenerationRequest, label: str) -> Mapping[str, Any]:
    units = _units(request)
    if not units or not isinstance(units[0], Mapping):
        raise UserError(f"The {label} axis changes ControlNet unit 0: set up unit 0 (model and control image) first.")
    return units[0]


def _axis(label: str, field: str, kind: type, parse_unit: ParseUnit, attribute: str | None = None,
          choices: Callable[[], list[str]] | None = None) -> PlotAxis:
    """An axis that sets `field` of unit 0, checked and normalised by parsing the unit with each value."""
    def confirm(request: GenerationRequest, values: list[Any]) -> list[Any]:
        unit = _unit0(request, PREFIX + label)
        checked = []
        for value in values:
            parsed = parse_unit({**unit, field: value, "image": None, "input_image": None}, 0)
            checked.append(getattr(parsed, attribute or field))
        return checked

    return PlotAxis(PREFIX + label, kind, lambda request, value: with_unit0(request, field, value), confirm,
                    choices=choices)


def _enabled_axis(find_model: FindModel) -> PlotAxis:
    label = PREFIX + "Enabled"

    def confirm(request: GenerationRequest, values: list[Any]) -> list[Any]:
        unit = _unit0(request, label)
        if any(values):
            if not unit.get("model"):
                raise UserError(f"The {label} axis turns ControlNet unit 0 on: choose its model first.")
            find_model(str(unit["model"]))
        return [bool(value) for value in values]

    return PlotAxis(label, bool, lambda request, value: with_unit0(request, "enabled", bool(value)), confirm,
                    choices=lambda: ["False", "True"])


def _model_axis(find_model: FindModel, titles: Callable[[], list[str]]) -> PlotAxis:
    label = PREFIX + "Model"

    def confirm(request: GenerationRequest, values: list[Any]) -> list[Any]:
        _unit0(request, label)
        return [find_model(str(value))[1] for value in values]

    return PlotAxis(label, str, lambda request, value: with_unit0(request, "model", value), confirm,
                    choices=titles, cost=0.9)


def plot_axes(find_model: FindModel, titles: Callable[[], list[str]], parse_unit: ParseUnit,
              modules: Callable[[], list[str]]) -> list[PlotAxis]:
    """The axes in the A1111 extension's order."""
    return [
        _enabled_axis(find_model),
        _model_axis(find_model, titles),
        _axis("Weight", "weight", float, parse_unit),
        _axis("Guidance Start", "guidance_start", float, parse_unit),
        _axis("Guidance End", "guidance_end", float, parse_unit),
        _axis("Control Mode", "control_mode", str, parse_unit, choices=lambda: list(CONTROL_MODES)),
        _axis("Resize Mode", "resize_mode", str, parse_unit, choices=lambda: list(RESIZE_MODES)),
        _axis("Preprocessor", "module", str, parse_unit, choices=modules),
        _axis("Pre Resolution", "processor_res", int, parse_unit),
        _axis("Pre Threshold A", "threshold_a", float, parse_unit),
        _axis("Pre Threshold B", "threshold_b", float, parse_unit),
    ]
