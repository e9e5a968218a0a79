"""The Settings tab: every option of the option table, grouped by section, applied with one button.

Widgets are chosen from each `OptionSpec` (checkbox, slider for bounded numbers, number box, text box, dropdown;
dynamic choices from the model manager and the sampler registry). "Apply settings" sends only the options that
differ from the current snapshot to `app.settings.update`, which validates them all at once and writes
config.json atomically; the message lists what changed or what was refused. Problems met while loading
config.json (a corrupt file moved aside, a bad value replaced by its default) are shown at the top of the tab.

Checkpoint, VAE and Clip skip live in the bar at the top of the page and are not repeated here.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import gradio as gr

from modules.errors import UserError
from modules.options import OptionSpec

if TYPE_CHECKING:
    from modules.app import App

log = logging.getLogger(__name__)

TAB = "settings"
TOP_ROW_KEYS = frozenset({"sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers"})


def quicksettings_keys(settings: Mapping[str, Any], table_keys: Iterable[str]) -> list[str]:
    """The options of `quicksettings_list` (A1111's "Options in main UI") that the bar at the top shows besides
    checkpoint, VAE and Clip skip, in the list's order; names that are no option are skipped."""
    known = set(table_keys)
    listed = settings.get("quicksettings_list") or ()
    return [key for key in dict.fromkeys(listed) if key in known and key not in TOP_ROW_KEYS]


@dataclass
class SettingsTab:
    widgets: dict[str, gr.components.Component]
    apply: gr.Button
    message: gr.HTML
    problems: gr.HTML


def dynamic_choices(app: "App", spec: OptionSpec) -> list[str]:
    """Choices of an option: its static list, or the current checkpoints / VAEs / samplers."""
    if spec.choices_source == "checkpoints":
        return [record.title for record in app.models.list_checkpoints()]
    if spec.choices_source == "vaes":
        return ["Automatic", "None", *(record.name for record in app.models.list_vaes())]
    if spec.choices_source == "samplers":
        return app.samplers.visible()
    return list(spec.choices)


def widget_value(spec: OptionSpec, value: Any) -> Any:
    """Setting value -> widget value (lists for multiselects, "" for an unset choice)."""
    if spec.kind == "list":
        return list(value or ())
    if value is None:
        return "" if spec.kind in ("str", "path") else None
    return value


def setting_value(spec: OptionSpec, value: Any) -> Any:
    """Widget value -> setting value in the option's type (validation itself is the settings store's job)."""
    if spec.kind == "bool":
        return bool(value)
    if spec.kind == "int" and isinstance(value, (int, float)) and float(value).is_integer():
        return int(value)
    if spec.kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if spec.kind == "list":
        return tuple(value or ())
    if spec.kind == "choice" and value in ("", None) and spec.nullable:
        return None
    return value


def option_widget(app: "App", spec: OptionSpec, value: Any, *, info: bool = True,
                  **layout: Any) -> gr.components.Component:
    """The widget of one option (`setting_<key>`): checkbox, slider or number, dropdown or textbox."""
    common: dict[str, Any] = {"label": spec.label, "elem_id": f"setting_{spec.key}",
                              "info": (spec.info or None) if info else None, **layout}
    shown = widget_value(spec, value)
    if spec.kind == "bool":
        return gr.Checkbox(value=shown, **common)
    if spec.kind in ("int", "float"):
        if spec.minimum is not None and spec.maximum is not None:
            step = spec.step or (1 if spec.kind == "int" else 0.01)
            return gr.Slider(minimum=spec.minimum, maximum=spec.maximum, step=step, value=shown, **common)
        return gr.Number(value=shown, precision=0 if spec.kind == "int" else None, minimum=spec.minimum,
                         maximum=spec.maximum, **common)
    if spec.kind in ("choice", "list"):
        choices = dynamic_choices(app, spec)
        multiselect = spec.kind == "list"
        free = not choices or (multiselect and spec.choices_source is None and not spec.choices)
        if not multiselect and shown not in choices and shown is not None:
            choices = [shown, *choices]
        return gr.Dropdown(choices=choices, value=shown, multiselect=multiselect, allow_custom_value=free, **common)
    return gr.Textbox(value=shown, lines=1, **common)


def problems_html(app: "App") -> str:
    """Warnings from loading config.json, ui-config.json and styles.csv, for the top of the tab."""
    messages = [*app.settings.problems, *app.ui_config.problems]
    if app.styles.load_warning:
        messages.append(app.styles.load_warning)
    if not messages:
        return ""
    items = "".join(f"<li>{html.escape(message)}</li>" for message in messages)
    return f"<div class='settings-problems'><b>Problems found while loading the settings:</b><ul>{items}</ul></div>"


def changed_settings(app: "App", widgets: Mapping[str, Any]) -> dict[str, Any]:
    """The options whose widget value differs from the current snapshot, converted to setting values."""
    settings = app.settings.get()
    table = settings.table
    changes: dict[str, Any] = {}
    for key, raw in widgets.items():
        spec = table[key]
        value = setting_value(spec, raw)
        current = settings[key]
        if isinstance(current, list):
            current = tuple(current)
        if value != current:
            changes[key] = value
    return changes


def apply_settings(app: "App", widgets: Mapping[str, Any]) -> str:
    """Apply changed options; returns the message for the user (never raises for bad input)."""
    changes = changed_settings(app, widgets)
    if not changes:
        return "<p class='settings-message'>Nothing changed.</p>"
    table = app.settings.get().table
    try:
        app.settings.update(changes)
    except UserError as error:
        return f"<p class='settings-message error'>Nothing was applied. {html.escape(str(error))}</p>"
    labels = ", ".join(html.escape(table[key].label) for key in changes)
    count = len(changes)
    return f"<p class='settings-message'>{count} setting{'s' if count != 1 else ''} changed: {labels}.</p>"


def current_values(app: "App", widgets: Mapping[str, gr.components.Component]) -> dict[Any, Any]:
    """{widget: value} from the current snapshot (after Apply, and when a page loads)."""
    settings = app.settings.get()
    return {widget: widget_value(settings.table[key], settings[key]) for key, widget in widgets.items()}


def build_settings_tab(app: "App") -> SettingsTab:
    """Create the tab inside the main `gr.Tabs` and wire Apply."""
    settings = app.settings.get()
    widgets: dict[str, gr.components.Component] = {}
    with gr.Tab("Settings", id=TAB, elem_id=f"tab_{TAB}"):
        problems = gr.HTML(problems_html(app), elem_id="settings_problems")
        with gr.Row():
            apply = gr.Button("Apply settings", variant="primary", elem_id="settings_submit")
        message = gr.HTML("", elem_id="settings_result")
        quick = set(quicksettings_keys(settings, settings.table.keys()))
        gr.Markdown("Checkpoint, VAE, Clip skip and the settings of the Quicksettings list are set in the bar at the "
                    "top of the page (a change of the list shows after a restart).")
        with gr.Tabs(elem_id="settings_sections"):
            for section, specs in settings.table.sections().items():
                shown = [spec for spec in specs if spec.key not in TOP_ROW_KEYS and spec.key not in quick]
                if not shown:
                    continue
                with gr.Tab(section):
                    for spec in shown:
                        widgets[spec.key] = option_widget(app, spec, settings[spec.key])
    tab = SettingsTab(widgets, apply, message, problems)

    def on_apply(data: dict) -> dict:
        values = {key: data[widget] for key, widget in widgets.items()}
        return {message: apply_settings(app, values), **current_values(app, widgets)}

    apply.click(on_apply, inputs=set(widgets.values()), outputs=[message, *widgets.values()], show_progress="hidden")
    return tab
