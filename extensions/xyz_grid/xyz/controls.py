"""The X/Y/Z plot's controls: the Gradio UI, and the positional `script_args` layouts API clients send.

The controls are named and ordered as the positional values of A1111's (1.10) X/Y/Z plot, so an A1111 client's
`script_args` list maps one to one (`ARG_NAMES`, 18 values):

    x_type, x_values, x_values_dropdown, y_type, y_values, y_values_dropdown, z_type, z_values, z_values_dropdown,
    draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds, vary_seeds_x, vary_seeds_y, vary_seeds_z,
    margin_size, csv_mode

A shorter list sets the first values (older A1111 versions send a prefix of this list). The layout of earlier
versions of this program (`LEGACY_NAMES`: no dropdown values, no seed variation) is still accepted: a list whose
third value is an axis type (a non-empty string or an int) rather than a list of dropdown values is read that way.

Axis values come from the `*_values` text, or from the `*_values_dropdown` list when "Use text inputs instead of
dropdowns" (`csv_mode`) is off and that list is not empty (A1111 reads the dropdown for axes with choices and
would plot nothing from an empty one; here the text is used then).
"""

from __future__ import annotations

import csv
import io
from typing import Any, Callable, Mapping, Sequence

from modules.extensions.api import UiBuilder

from .axes import AxisError, axes_for, find_axis

AXIS_NAMES = ("x", "y", "z")
ARG_NAMES = (
    "x_type", "x_values", "x_values_dropdown", "y_type", "y_values", "y_values_dropdown", "z_type", "z_values",
    "z_values_dropdown", "draw_legend", "include_lone_images", "include_sub_grids", "no_fixed_seeds", "vary_seeds_x",
    "vary_seeds_y", "vary_seeds_z", "margin_size", "csv_mode",
)
LEGACY_NAMES = (
    "x_type", "x_values", "y_type", "y_values", "z_type", "z_values", "draw_legend", "include_lone_images",
    "include_sub_grids", "no_fixed_seeds", "margin_size",
)


def _is_axis_type(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and bool(value))


def named_args(values: Sequence[Any]) -> dict[str, Any]:
    """Named values from a positional `script_args` list (A1111's layout, or this program's earlier one)."""
    legacy = len(values) >= 3 and len(values) <= len(LEGACY_NAMES) and _is_axis_type(values[2])
    names = LEGACY_NAMES if legacy else ARG_NAMES
    if len(values) > len(names):
        raise AxisError(f"The X/Y/Z plot takes at most {len(ARG_NAMES)} positional arguments "
                        f"({', '.join(ARG_NAMES)}), got {len(values)}.")
    return dict(zip(names, values))


def csv_text(items: Sequence[Any]) -> str:
    """A list of values as one CSV line (A1111's `list_to_csv_string`): quoted where needed."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow([str(item) for item in items])
    return buffer.getvalue().strip()


def axis_text(args: Mapping[str, Any], name: str) -> str:
    """The values text of axis `name` ("x", "y", "z"): the dropdown list or the text box (see the module doc)."""
    dropdown = args.get(f"{name}_values_dropdown")
    if not bool(args.get("csv_mode", False)) and isinstance(dropdown, (list, tuple)) and dropdown:
        return csv_text(dropdown)
    return str(args.get(f"{name}_values") or "")


def ui(builder: UiBuilder) -> dict[str, Any]:
    """The controls, named and ordered as `ARG_NAMES` (the layout on the page differs)."""
    import gradio as gr

    controls: dict[str, Any] = {}
    for name, default in zip(AXIS_NAMES, ("Seed", "Nothing", "Nothing")):
        controls.update(_axis_row(builder, name, default))
    with gr.Row():
        controls["draw_legend"] = gr.Checkbox(True, label="Draw legend", elem_id=builder.elem_id("draw_legend"))
        controls["include_lone_images"] = gr.Checkbox(True, label="Include Sub Images",
                                                      elem_id=builder.elem_id("include_lone_images"))
        controls["include_sub_grids"] = gr.Checkbox(False, label="Include Sub Grids",
                                                    elem_id=builder.elem_id("include_sub_grids"))
        controls["no_fixed_seeds"] = gr.Checkbox(False, label="Keep -1 for seeds",
                                                 elem_id=builder.elem_id("no_fixed_seeds"))
    with gr.Row():
        for name in AXIS_NAMES:
            controls[f"vary_seeds_{name}"] = gr.Checkbox(
                False, label=f"Vary seeds for {name.upper()}", elem_id=builder.elem_id(f"vary_seeds_{name}"),
                info=f"Use different seeds for images along the {name.upper()} axis.")
    with gr.Row():
        controls["margin_size"] = gr.Slider(0, 500, value=0, step=2, label="Grid margins (px)",
                                            elem_id=builder.elem_id("margin_size"))
        controls["csv_mode"] = gr.Checkbox(False, label="Use text inputs instead of dropdowns",
                                           elem_id=builder.elem_id("csv_mode"))
    _wire_value_inputs(builder, controls)
    return {name: controls[name] for name in ARG_NAMES}


def _axis_row(builder: UiBuilder, name: str, default: str) -> dict[str, Any]:
    import gradio as gr

    labels = [axis.label for axis in axes_for(builder.mode, builder.plot_axes())]
    upper = name.upper()
    with gr.Row():
        kind = gr.Dropdown(labels, value=default, label=f"{upper} type", elem_id=builder.elem_id(f"{name}_type"))
        text = gr.Textbox("", label=f"{upper} values", lines=1, elem_id=builder.elem_id(f"{name}_values"))
        dropdown = gr.Dropdown([], value=[], label=f"{upper} values", multiselect=True, visible=False,
                               elem_id=builder.elem_id(f"{name}_values_dropdown"))
    return {f"{name}_type": kind, f"{name}_values": text, f"{name}_values_dropdown": dropdown}


def value_inputs_update(builder: UiBuilder) -> Callable[[Any, bool, Any], tuple[Any, Any]]:
    """(type, csv_mode, dropdown values) -> updates of (values text box, values dropdown): the dropdown, with the
    axis's current choices (keeping the picked values that are among them), for axes that have choices while
    `csv_mode` is off; otherwise the text box, and the dropdown emptied (its values would win, see `axis_text`)."""
    import gradio as gr

    def update(axis_type: Any, csv_mode: bool, picked: Any) -> tuple[Any, Any]:
        try:
            kind = find_axis(axis_type, builder.mode, builder.plot_axes()).choices
        except AxisError:
            kind = None
        if kind is None or csv_mode:
            return gr.update(visible=True), gr.update(visible=False, choices=[], value=[])
        choices = kind() if callable(kind) else builder.choices(kind)
        kept = [value for value in (picked or []) if value in choices]
        return gr.update(visible=False), gr.update(visible=True, choices=choices, value=kept)

    return update


def _wire_value_inputs(builder: UiBuilder, controls: Mapping[str, Any]) -> None:
    update = value_inputs_update(builder)
    for name in AXIS_NAMES:
        outputs = [controls[f"{name}_values"], controls[f"{name}_values_dropdown"]]
        inputs = [controls[f"{name}_type"], controls["csv_mode"], controls[f"{name}_values_dropdown"]]
        controls[f"{name}_type"].change(update, inputs=inputs, outputs=outputs, show_progress="hidden")
        controls["csv_mode"].change(update, inputs=inputs, outputs=outputs, show_progress="hidden")
