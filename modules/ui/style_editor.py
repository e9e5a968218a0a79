"""The style editor of the generation tabs (A1111's 🖌️ "Edit styles"): create, change and delete the styles of
styles.csv from the page.

The 🖌️ button beside 📋 opens a box under the prompts: pick a style (or type a new name), edit its prompt and
negative prompt (`{prompt}` marks where the main prompt goes), **Save** it, **Delete** it, copy the main prompts
into it, or **Apply** it to the main prompts. Saving writes styles.csv at once (the previous file is kept as
styles.csv.bak, so a deleted style can be recovered), and both tabs' Styles lists follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import gradio as gr

from modules.errors import UserError
from modules.prompts.styles import PromptStyle, apply_styles_to_prompt

if TYPE_CHECKING:
    from modules.app import App
    from modules.ui.common import PromptRow

EDIT_STYLES_ICON = "\U0001f58c\ufe0f"  # 🖌️


@dataclass
class StyleEditor:
    """The box of one tab (hidden until 🖌️ is clicked)."""

    open: gr.Button
    box: gr.Group
    name: gr.Dropdown
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    copy: gr.Button
    apply: gr.Button
    save: gr.Button
    delete: gr.Button
    close: gr.Button


def build_style_editor(tab: str, names: Sequence[str], open_button: gr.Button) -> StyleEditor:
    """Create the (hidden) box in the current layout context; `open_button` is the tab's 🖌️ tool button."""
    with gr.Group(visible=False, elem_id=f"{tab}_styles_dialog") as box:
        name = gr.Dropdown(label="Style", choices=list(names), value=None, allow_custom_value=True,
                           elem_id=f"{tab}_edit_style_name", info="pick a style, or type a new name")
        prompt = gr.Textbox(label="Prompt", lines=2, elem_id=f"{tab}_edit_style_prompt",
                            placeholder="{prompt} marks where the main prompt goes (else the style is appended)")
        negative = gr.Textbox(label="Negative prompt", lines=2, elem_id=f"{tab}_edit_style_neg_prompt")
        with gr.Row():
            copy = gr.Button("\u21e9 Copy the main prompts", elem_id=f"{tab}_edit_style_copy", size="sm")
            apply = gr.Button("Apply to the main prompts", elem_id=f"{tab}_edit_style_apply", size="sm")
            save = gr.Button("Save", variant="primary", elem_id=f"{tab}_edit_style_save", size="sm")
            delete = gr.Button("Delete", variant="stop", elem_id=f"{tab}_edit_style_delete", size="sm")
            close = gr.Button("Close", elem_id=f"{tab}_edit_style_close", size="sm")
    return StyleEditor(open_button, box, name, prompt, negative, copy, apply, save, delete, close)


def wire_style_editors(app: "App", rows: Sequence["PromptRow"]) -> None:
    """Every tab's editor; saving or deleting refreshes the Styles lists and editors of all `rows`."""
    editors = [row.style_editor for row in rows if row.style_editor is not None]
    lists = [component for row in rows for component in (row.styles, row.apply_styles)] + \
        [editor.name for editor in editors]

    def refreshed(source: StyleEditor, selected: str | None) -> dict[Any, Any]:
        """New choices everywhere; the editor that saved or deleted shows `selected`, the others keep theirs."""
        names = app.styles.names()
        updates: dict[Any, Any] = {}
        for row in rows:
            updates[row.styles] = gr.Dropdown(choices=names, visible=True)
            updates[row.apply_styles] = gr.Button(visible=True)
        for editor in editors:
            updates[editor.name] = gr.Dropdown(choices=names, value=selected) if editor is source \
                else gr.Dropdown(choices=names)
        return updates

    for row in rows:
        if row.style_editor is not None:
            _wire_one(app, row, row.style_editor, lists, refreshed)


def _wire_one(app: "App", row: "PromptRow", editor: StyleEditor, lists: list[Any], refreshed: Any) -> None:
    editor.open.click(lambda: gr.Group(visible=True), outputs=editor.box, show_progress="hidden", queue=False)
    editor.close.click(lambda: gr.Group(visible=False), outputs=editor.box, show_progress="hidden", queue=False)

    def pick(name: str | None) -> tuple[Any, Any]:
        style = app.styles.get(name) if name else None
        if style is None:  # a new name: keep what is being typed
            return gr.skip(), gr.skip()
        return style.prompt, style.negative_prompt

    editor.name.input(pick, inputs=editor.name, outputs=[editor.prompt, editor.negative_prompt],
                      show_progress="hidden", queue=False)
    editor.copy.click(lambda prompt, negative: (prompt, negative), inputs=[row.prompt, row.negative_prompt],
                      outputs=[editor.prompt, editor.negative_prompt], show_progress="hidden", queue=False)

    def apply(prompt: str, negative: str, style_prompt: str, style_negative: str) -> tuple[str, str]:
        return (apply_styles_to_prompt(prompt or "", [style_prompt or ""]),
                apply_styles_to_prompt(negative or "", [style_negative or ""]))

    editor.apply.click(apply, inputs=[row.prompt, row.negative_prompt, editor.prompt, editor.negative_prompt],
                       outputs=[row.prompt, row.negative_prompt], show_progress="hidden", queue=False)

    def save(name: str | None, prompt: str, negative: str) -> dict[Any, Any]:
        name = (name or "").strip()
        if not name:
            raise gr.Error("Type a name for the style first.", print_exception=False)
        existing = app.styles.get(name)
        extra = existing.extra if existing is not None else ()
        try:
            app.styles.set_style(PromptStyle(name, prompt or "", negative or "", extra))
            app.styles.save()
        except UserError as error:
            app.styles.reload()  # what is on disk stays the truth
            raise gr.Error(str(error), print_exception=False) from error
        gr.Info(f"{'Updated' if existing is not None else 'Saved'} style {name!r} in {app.styles.path.name}.")
        return refreshed(editor, name)

    editor.save.click(save, inputs=[editor.name, editor.prompt, editor.negative_prompt], outputs=lists,
                      show_progress="hidden")

    def delete(name: str | None) -> dict[Any, Any]:
        if not name or app.styles.get(name) is None:
            gr.Warning("Pick a saved style to delete.")
            return {}
        try:
            app.styles.delete_style(name)
            app.styles.save()
        except UserError as error:
            app.styles.reload()
            raise gr.Error(str(error), print_exception=False) from error
        gr.Info(f"Deleted style {name!r}; the previous {app.styles.path.name} is kept as "
                f"{app.styles.path.name}.bak.")
        return {**refreshed(editor, None), editor.prompt: "", editor.negative_prompt: ""}

    editor.delete.click(delete, inputs=editor.name, outputs=[*lists, editor.prompt, editor.negative_prompt],
                        show_progress="hidden")
