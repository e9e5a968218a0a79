"""The Quicksettings list (A1111's "Options in main UI"): its options sit in the bar at the top, not in the
Settings tab, are stored as soon as they change and follow the settings when a page loads."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from modules.settings import Settings
from modules.ui.layout import build_ui
from modules.ui.tokens import TokenCounter
from tests.ui.fakes import make_app
from tests.ui.helpers import Page


def _descendants(block: object) -> list[object]:
    found = []
    for child in getattr(block, "children", []):
        found += [child, *_descendants(child)]
    return found


def test_listed_options_move_to_the_top_bar(tmp_path: Path, token_counter: TokenCounter) -> None:
    listed = ("sd_model_checkpoint", "tiling", "eta_noise_seed_delta", "no_such_option", "tiling")
    app = make_app(tmp_path, settings=Settings(values={"quicksettings_list": listed}))
    try:
        blocks = build_ui(app, tokens=token_counter)
        page = Page(blocks)
        quick = page.find("quicksettings")
        tiling, ensd = page.find("setting_tiling"), page.find("setting_eta_noise_seed_delta")
        assert isinstance(tiling, gr.Checkbox) and isinstance(ensd, gr.Number)
        ids = [getattr(block, "elem_id", None) for block in _descendants(quick)]
        assert ids.index("setting_tiling") < ids.index("setting_eta_noise_seed_delta")  # the list's order, once
        assert sum(1 for block in blocks.blocks.values() if getattr(block, "elem_id", None) == "setting_tiling") == 1
        page.call("setting_tiling", "input", {"setting_tiling": True})
        assert app.settings.get()["tiling"] is True
        page.call("setting_eta_noise_seed_delta", "input", {"setting_eta_noise_seed_delta": 31337})
        assert app.settings.get()["eta_noise_seed_delta"] == 31337
        app.settings.update({"tiling": False})
        load = next(fn for fn in blocks.fns.values()  # the page-load handler, found by its outputs
                    if tiling in fn.outputs and fn.targets[0][1] == "load")
        assert load.fn()[tiling] is False
    finally:
        app.close()
