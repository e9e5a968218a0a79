"""Wiring of the results panel's Save and Zip buttons (`modules.manual_save`): the chosen pictures are written to
the Save folder and offered for download under the buttons, and a toast names what was saved."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from modules.job_options import OutputOptions
from modules.manual_save import SaveButtonOptions, save_result
from modules.types import GenerationResult
from modules.ui.results import ResultPanel

if TYPE_CHECKING:
    from modules.app import App


def wire_save_buttons(app: "App", panel: ResultPanel) -> None:
    """Save and Zip of one results panel (nothing when the panel has no such buttons)."""
    if panel.save is None or panel.zip is None or panel.download is None:
        return
    download = panel.download
    served: set[Path] = set()

    def saver(make_zip: bool) -> Any:
        def save(result: GenerationResult | None, selected: int | None) -> Any:
            if result is None or not result.images:
                gr.Warning("There is no picture to save: generate one first.")
                return gr.skip()
            settings = app.settings.get()
            try:
                saved = save_result(result, selected, OutputOptions.from_mapping(settings),
                                    SaveButtonOptions.from_mapping(settings), app.paths.data_dir,
                                    make_zip=make_zip)
            except OSError as error:
                raise gr.Error(f"Could not save: {error}", print_exception=False) from error
            pictures = [path for path in saved.pictures if path.suffix != ".txt"]
            what = saved.archive.name if saved.archive is not None else ", ".join(path.name for path in pictures)
            gr.Info(f"Saved: {what}")
            folders = {path.parent.resolve() for path in saved.downloads} - served
            if folders:  # the browser downloads the saved files themselves (as the Gallery tab shows them)
                gr.set_static_paths(sorted(folders))
                served.update(folders)
            return gr.File(value=[str(path) for path in saved.downloads], visible=True)
        return save

    inputs = [panel.result, panel.selected]
    panel.save.click(saver(False), inputs=inputs, outputs=download, show_progress="hidden")
    panel.zip.click(saver(True), inputs=inputs, outputs=download, show_progress="hidden")
