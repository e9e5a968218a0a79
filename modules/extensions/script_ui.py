"""Drawing extension UI with Gradio: the scripts of a generation tab (and turning their values into a request),
and the guarded builders of extension tabs.

`render_script_area(scripts, mode)` is called inside the tab's layout. It draws every always-on script in its own
accordion, then A1111's "Script" dropdown with each selectable script's controls in a group that is visible only
while that script is selected. It returns a `ScriptArea` whose `inputs` are named components (the UI binder adds
them to the generate handler's inputs) and whose `apply(request, values)` puts the values into
`request.extension_args` (see modules.extensions.scripts for the layout). A script value that is an `api.Combined`
adds each of its controls as an input ('<extension>/<value>/<control>') and is built from their values by its
`combine` when the job is sent. `ScriptArea.paste(params)` fills the controls of the scripts that own keys of a
pasted infotext (`api.InfotextPaste`, API 1.5); `paste_outputs()` are the components it may update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from modules.errors import UserError
from modules.extensions.api import Combined, PasteContext, ScriptMode, UiTab
from modules.extensions.loader import ExtensionRecord
from modules.extensions.scripts import SCRIPT_KEY, ScriptCatalog, ScriptEntry
from modules.types import GenerationRequest

SELECTOR = "script_name"
"""Input name of the "Script" dropdown."""
NO_SCRIPT = "None"


def input_name(entry: ScriptEntry, component: str) -> str:
    """Input name of one script control: '<extension>/<component>'."""
    return f"{entry.name}/{component}"


@dataclass
class ScriptArea:
    """The drawn script controls of one tab; `inputs` maps input names to Gradio components."""

    mode: ScriptMode
    inputs: dict[str, Any] = field(default_factory=dict)
    always_on: list[tuple[ScriptEntry, list[str]]] = field(default_factory=list)
    selectable: dict[str, tuple[ScriptEntry, list[str]]] = field(default_factory=dict)
    combined: dict[str, Combined] = field(default_factory=dict)  # by input name of the value

    def apply(self, request: GenerationRequest, values: Mapping[str, Any]) -> GenerationRequest:
        """`request` with the always-on values, the selected script and its values (by input name)."""
        ext_args: dict[str, Any] = {key: dict(value) for key, value in request.extension_args.items()}
        chosen = self.selectable.get(str(values.get(SELECTOR) or NO_SCRIPT))
        groups = list(self.always_on) + ([chosen] if chosen else [])
        for entry, names in groups:
            target = ext_args.setdefault(entry.name, {})
            for name in names:
                key = input_name(entry, name)
                combined = self.combined.get(key)
                if combined is not None:
                    target[name] = _combine(entry, name, combined, {
                        control: values.get(f"{key}/{control}") for control in combined.controls})
                elif key in values:
                    target[name] = values[key]
        if chosen:
            ext_args[SCRIPT_KEY] = {"title": chosen[0].title}
        else:
            ext_args.pop(SCRIPT_KEY, None)
        return request.with_changes(extension_args=ext_args)


@dataclass
class PastedScripts:
    """What pasting an infotext changes among a tab's script controls: {component: value} and messages."""

    updates: dict[Any, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _paste_groups(area: ScriptArea) -> list[tuple[ScriptEntry, list[str]]]:
    return [(entry, names) for entry, names in [*area.always_on, *area.selectable.values()]
            if entry.script.paste is not None]


def paste_outputs(area: ScriptArea) -> list[Any]:
    """The components a paste may update: every control of the scripts that own infotext keys."""
    found = []
    for entry, names in _paste_groups(area):
        prefixes = tuple(input_name(entry, name) for name in names)
        found += [component for key, component in area.inputs.items()
                  if key in prefixes or key.startswith(tuple(f"{prefix}/" for prefix in prefixes))]
    return found


def paste_scripts(area: ScriptArea, params: Mapping[str, str]) -> PastedScripts:
    """The control values the scripts of `area` read from infotext `params` (API 1.5 `InfotextPaste`). A UserError
    from a script becomes a warning; any other failure is recorded in its extension's errors and warned about."""
    pasted = PastedScripts()
    for entry, names in _paste_groups(area):
        spec = entry.script.paste
        assert spec is not None
        owned = {key: value for key, value in params.items() if spec.owns(key)}
        if not owned:
            continue
        context = PasteContext(owned, area.mode)
        try:
            values = spec.read(context)
            if not isinstance(values, Mapping):
                raise TypeError(f"read() must return a dict of control values, got {type(values).__name__}")
        except UserError as error:
            pasted.warnings.append(str(error))
            continue
        except Exception as exc:  # noqa: BLE001 - isolated per extension
            entry.extension.record_error(f"infotext paste of script '{entry.title}'", exc)
            pasted.warnings.append(f"The script '{entry.title}' of extension '{entry.name}' could not read its "
                                   f"parameters: {type(exc).__name__}: {exc}.")
            continue
        pasted.warnings.extend(context.warnings)
        for name, value in values.items():
            component = area.inputs.get(input_name(entry, str(name)))
            if component is None or str(name).split("/", 1)[0] not in names:
                entry.extension.record_error(f"infotext paste of script '{entry.title}'",
                                             KeyError(f"no control named {name!r}"))
                continue
            pasted.updates[component] = value
    return pasted


def _combine(entry: ScriptEntry, name: str, combined: Combined, values: Mapping[str, Any]) -> Any:
    """The Combined value; a UserError reaches the user, anything else is recorded and refuses the job."""
    try:
        return combined.combine(values)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - isolated per extension
        entry.extension.record_error(f"combine() of '{name}' of script '{entry.title}'", exc)
        raise UserError(f"The script '{entry.title}' of extension '{entry.name}' could not read its controls: "
                        f"{type(exc).__name__}: {exc}.") from exc


def _add_controls(area: ScriptArea, scripts: ScriptCatalog, entry: ScriptEntry) -> list[str]:
    import gradio as gr

    components = scripts.build(entry, area.mode)
    if not components and entry.extension.errors:
        gr.Markdown(f"Extension **{entry.name}** could not draw '{entry.title}': {entry.extension.errors[-1].message}")
    names = []
    for name, component in components.items():
        key = input_name(entry, name)
        if key in area.inputs or key in area.combined:
            entry.extension.record_error(f"ui() of script '{entry.title}'",
                                         ValueError(f"control name {name!r} is used twice in this extension"))
            continue
        if isinstance(component, Combined):
            area.combined[key] = component
            area.inputs.update({f"{key}/{control}": part for control, part in component.controls.items()})
        else:
            area.inputs[key] = component
        names.append(name)
    return names


def render_script_area(scripts: ScriptCatalog, mode: ScriptMode) -> ScriptArea:
    """Draw the scripts of `mode` in the current Gradio layout (see the module doc)."""
    import gradio as gr

    area = ScriptArea(mode)
    for entry in scripts.entries(mode, always_on=True):
        with gr.Accordion(entry.title, open=False, elem_id=f"{mode}_script_{entry.name}"):
            area.always_on.append((entry, _add_controls(area, scripts, entry)))
    selectable = scripts.entries(mode, always_on=False)
    if not selectable:
        return area
    titles = [entry.title for entry in selectable]
    selector = gr.Dropdown([NO_SCRIPT, *titles], value=NO_SCRIPT, label="Script", elem_id=f"{mode}_script_select")
    area.inputs[SELECTOR] = selector
    groups = []
    for entry in selectable:
        with gr.Group(visible=False) as group:
            area.selectable[entry.title] = (entry, _add_controls(area, scripts, entry))
        groups.append(group)
    # a dict answer: with a single output, Gradio would take a returned list as that one output's value
    selector.change(lambda title: {group: gr.update(visible=title == t) for group, t in zip(groups, titles)},
                    inputs=selector, outputs=groups)
    return area


def tab_items(result: Any) -> list[Any]:
    """UI_TABS results as a list: one UiTab, one A1111-style (build, title, id) tuple, or a sequence of them."""
    if isinstance(result, UiTab) or (isinstance(result, tuple) and len(result) == 3 and callable(result[0])):
        return [result]
    return list(result) if isinstance(result, (list, tuple)) else [result]


def as_tab(item: Any) -> UiTab | None:
    if isinstance(item, UiTab):
        return item
    if isinstance(item, tuple) and len(item) == 3 and callable(item[0]):
        return UiTab(item[0], str(item[1]), str(item[2]))
    return None


def guarded_build(record: ExtensionRecord, tab: UiTab) -> Callable[[], None]:
    """`tab.build`, drawing an error message inside the tab (and recording the error) when it raises."""
    def build() -> None:
        try:
            tab.build()
        except Exception as exc:  # noqa: BLE001 - isolated per extension
            record.record_error(f"UI tab '{tab.title}'", exc)
            import gradio as gr

            gr.Markdown(f"Extension **{record.name}** failed to draw this tab: {type(exc).__name__}: {exc}")
    return build
