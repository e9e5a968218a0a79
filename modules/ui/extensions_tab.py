"""The Extensions tab, the tabs that extensions add, and the toasts for extension errors during a generation.

Two sub-tabs (A1111's):
- **Installed**: every discovered extension with its state, version, source, why it was skipped and the errors its
  code raised, and enable checkboxes. "Apply" stores the choice (`disabled_extensions` in config.json, via
  `ExtensionHost.set_enabled`): disabling stops an extension's generation hooks at once, everything else of it goes
  at the next start; enabling takes effect at the next start.
- **Install from URL**: `git clone` into the user extensions folder (`ExtensionHost.install`), loaded at the next
  start; refused, with the reason shown, when the server listens on the network without
  `--enable-insecure-extension-access`.
The list is rebuilt whenever the tab is opened, so errors raised since the page was built are shown.
"""

from __future__ import annotations

import html
import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import gradio as gr

from modules.errors import UserError
from modules.extensions.host import ExtensionHost, ExtensionInfo

if TYPE_CHECKING:
    from modules.app import App
    from modules.jobs import Job

log = logging.getLogger(__name__)

TAB = "extensions"
RESERVED_TAB_IDS = frozenset({"txt2img", "img2img", "pnginfo", "settings", TAB})
ERRORS_SHOWN = 5
RESTART_NOTE = ("Changes are saved to config.json and take full effect when the program is restarted (as with "
                "A1111's \"Apply and restart UI\"): a disabled extension stops changing generations at once, but its "
                "controls and tabs stay until the restart; an enabled one is loaded at the next start.")
INSTALL_REFUSED_NOTE = ("Installing extensions is disabled because the server is reachable from the network "
                        "(--listen or --server-name). Restart with --enable-insecure-extension-access to allow it.")


@dataclass
class ExtensionsTab:
    table: gr.HTML
    enabled: gr.CheckboxGroup
    apply: gr.Button
    status: gr.HTML
    install_url: gr.Textbox
    install_name: gr.Textbox
    install: gr.Button
    install_status: gr.HTML


# --- the list -----------------------------------------------------------------------------------------------------


def _source(info: ExtensionInfo) -> str:
    if info.builtin:
        return "built-in"
    if info.remote:
        commit = f" @ {info.commit[:8]}" if info.commit else ""
        return f"{html.escape(info.remote)}{html.escape(commit)}"
    return html.escape(str(info.path))


def _notes(info: ExtensionInfo) -> str:
    lines = [html.escape(message) for message in info.messages]
    errors = info.errors[-ERRORS_SHOWN:]
    if len(info.errors) > len(errors):
        lines.append(f"<i>{len(info.errors) - len(errors)} older error(s) not shown</i>")
    lines += [f"<span class='extension-error'>error in {html.escape(where)}: {html.escape(message)}</span>"
              for where, message in errors]
    return "<br>".join(lines)


def extensions_table_html(infos: Iterable[ExtensionInfo]) -> str:
    """The Installed list as an HTML table (escaped): name, enabled, state, version, source, messages and errors."""
    rows = []
    for info in infos:
        state = info.state if info.enabled or info.state != "loaded" else "loaded (disabled: restart to unload)"
        rows.append(
            f"<tr id='extension_row_{html.escape(info.name)}'><td>{html.escape(info.name)}</td>"
            f"<td>{'yes' if info.enabled else 'no'}</td><td>{html.escape(state)}</td>"
            f"<td>{html.escape(info.version or '')}</td><td>{_source(info)}</td><td>{_notes(info)}</td></tr>")
    if not rows:
        return "<p>No extensions are installed.</p>"
    head = "<tr><th>Extension</th><th>Enabled</th><th>State</th><th>Version</th><th>Source</th><th>Notes</th></tr>"
    return f"<table class='extensions-table'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _checkbox_values(infos: list[ExtensionInfo]) -> tuple[list[str], list[str]]:
    """(choices, checked) of the enabled checkboxes; a name found twice (a skipped duplicate folder) once."""
    choices = list(dict.fromkeys(info.name for info in infos))
    return choices, [name for name in choices if any(i.name == name and i.enabled for i in infos)]


def _checkbox_update(infos: list[ExtensionInfo]) -> gr.CheckboxGroup:
    choices, checked = _checkbox_values(infos)
    return gr.CheckboxGroup(choices=choices, value=checked)


def apply_enabled(host: ExtensionHost, selected: Iterable[str]) -> str:
    """Enable the `selected` extensions and disable the others (persisted); a status line as HTML."""
    wanted = set(selected or ())
    changed = []
    for info in host.list_extensions():
        enable = info.name in wanted
        if enable != info.enabled:
            host.set_enabled(info.name, enable)
            changed.append(f"{info.name} {'enabled' if enable else 'disabled'}")
    if not changed:
        return "<p>Nothing changed.</p>"
    return f"<p>Saved: {html.escape(', '.join(changed))}. Restart the program to apply it.</p>"


def install_extension(host: ExtensionHost, url: str, name: str | None) -> str:
    """Install from a git URL; the outcome (or the refusal / failure message) as HTML."""
    try:
        info = host.install(url or "", (name or "").strip() or None)
    except UserError as error:
        return f"<p class='extension-error'>{html.escape(str(error))}</p>"
    return (f"<p>Installed {html.escape(info.name)} into {html.escape(str(info.path))}. "
            "Restart the program to load it.</p>")


# --- building -----------------------------------------------------------------------------------------------------


def _build_install(host: ExtensionHost) -> tuple[gr.Textbox, gr.Textbox, gr.Button, gr.HTML]:
    allowed = host.installs_allowed
    if not allowed:
        gr.HTML(f"<p class='extension-error'>{html.escape(INSTALL_REFUSED_NOTE)}</p>",
                elem_id="extensions_install_refused")
    url = gr.Textbox(label="URL for extension's git repository", elem_id="extensions_install_url",
                     interactive=allowed)
    name = gr.Textbox(label="Specific folder name (optional)", elem_id="extensions_install_dirname",
                      interactive=allowed)
    button = gr.Button("Install", variant="primary", elem_id="extensions_install_button", interactive=allowed)
    status = gr.HTML("", elem_id="extensions_install_result")
    return url, name, button, status


def build_extensions_tab(app: "App") -> ExtensionsTab:
    """Create the Extensions tab (inside the main `gr.Tabs`) and wire it."""
    host = app.extensions
    infos = host.list_extensions()
    with gr.Tab("Extensions", id=TAB, elem_id=f"tab_{TAB}") as tab:
        with gr.Tabs(elem_id="extensions_tabs"):
            with gr.Tab("Installed", id="extensions_installed"):
                choices, checked = _checkbox_values(infos)
                enabled = gr.CheckboxGroup(label="Enabled extensions", elem_id="extensions_enabled",
                                           choices=choices, value=checked)
                with gr.Row():
                    apply = gr.Button("Apply", variant="primary", elem_id="extensions_apply", scale=0)
                    refresh = gr.Button("Refresh list", elem_id="extensions_refresh", scale=0)
                status = gr.HTML(f"<p>{html.escape(RESTART_NOTE)}</p>", elem_id="extensions_status")
                table = gr.HTML(extensions_table_html(infos), elem_id="extensions_table")
            with gr.Tab("Install from URL", id="extensions_install"):
                url, name, install, install_status = _build_install(host)
    view = ExtensionsTab(table, enabled, apply, status, url, name, install, install_status)
    _wire(host, view, tab, refresh)
    return view


def _wire(host: ExtensionHost, view: ExtensionsTab, tab: gr.Tab, refresh: gr.Button) -> None:
    def reload_list() -> tuple[str, gr.CheckboxGroup]:
        infos = host.list_extensions()
        return extensions_table_html(infos), _checkbox_update(infos)

    listing = [view.table, view.enabled]
    tab.select(reload_list, outputs=listing, show_progress="hidden")
    refresh.click(reload_list, outputs=listing, show_progress="hidden")

    def apply(selected: list[str]) -> tuple[str, str, gr.CheckboxGroup]:
        return (apply_enabled(host, selected), *reload_list())

    view.apply.click(apply, inputs=view.enabled, outputs=[view.status, *listing], show_progress="hidden")

    def install(url: str, name: str) -> tuple[str, str, gr.CheckboxGroup]:
        return (install_extension(host, url, name), *reload_list())

    view.install.click(install, inputs=[view.install_url, view.install_name],
                       outputs=[view.install_status, *listing])


def build_extension_tabs(app: "App") -> list[str]:
    """The top-level tabs of extensions (Hook.UI_TABS), inside the main `gr.Tabs`; returns their ids."""
    taken = set(RESERVED_TAB_IDS)
    ids = []
    for tab in app.extensions.hooks.ui_tabs():
        tab_id = tab.id
        if tab_id in taken:
            tab_id = next(f"{tab.id}_{n}" for n in range(2, len(taken) + 3) if f"{tab.id}_{n}" not in taken)
            log.warning("Extension tab '%s': id %r is taken, using %r", tab.title, tab.id, tab_id)
        taken.add(tab_id)
        with gr.Tab(tab.title, id=tab_id, elem_id=f"tab_{tab_id}"):
            tab.build()
        ids.append(tab_id)
    return ids


# --- errors during a generation ------------------------------------------------------------------------------------


def errors_between(host: ExtensionHost, start: float, end: float) -> list[str]:
    """One line per (extension, place) that recorded errors between the `time.time()` values `start` and `end`."""
    counts: Counter[tuple[str, str]] = Counter()
    last: dict[tuple[str, str], str] = {}
    for record in list(host.records):
        for error in list(record.errors):
            if start <= error.time <= end:
                key = (record.name, error.where)
                counts[key] += 1
                last[key] = error.message
    lines = []
    for (name, where), count in counts.items():
        times = f" ({count} times)" if count > 1 else ""
        lines.append(f"Extension {name}: error in {where}{times}: {last[(name, where)]}")
    return lines


def warn_extension_errors(host: ExtensionHost, job: "Job") -> None:
    """A `gr.Warning` per extension error recorded while `job` ran (hook errors: the job went on without it)."""
    if job.started is None:
        return
    end = job.finished if job.finished is not None else float("inf")
    for line in errors_between(host, job.started, end):
        gr.Warning(f"{line} (details in the Extensions tab)")

