"""The style editor (🖌️): pick, save a new style, apply it, delete it; both tabs' Styles lists follow; styles.csv
is written at once and the previous file kept as styles.csv.bak."""

from __future__ import annotations

import gradio as gr
import pytest

from tests.ui.fakes import FakeApp
from tests.ui.helpers import Page


def _choices(update: object) -> list[str]:
    return [choice[0] if isinstance(choice, tuple) else choice for choice in update.constructor_args["choices"]]


def test_open_pick_save_apply_delete(page: Page, app: FakeApp) -> None:
    assert page.call("txt2img_styles_edit_button", "click").constructor_args["visible"] is True
    assert page.call("txt2img_edit_style_name", "input", {"txt2img_edit_style_name": "film"}) == \
        ("{prompt}, film grain", "blurry")
    assert page.call("txt2img_edit_style_name", "input", {"txt2img_edit_style_name": "new one"}) == \
        (gr.skip(), gr.skip())  # a new name keeps what is typed
    copied = page.call("txt2img_edit_style_copy", "click",
                       {"txt2img_prompt": "a cat", "txt2img_negative_prompt": "dogs"})
    assert copied == ("a cat", "dogs")

    saved = page.call("txt2img_edit_style_save", "click", {
        "txt2img_edit_style_name": " noir ", "txt2img_edit_style_prompt": "{prompt}, black and white",
        "txt2img_edit_style_neg_prompt": "colour"})
    assert app.styles.get("noir").prompt == "{prompt}, black and white"
    assert "noir,\"{prompt}, black and white\",colour" in app.styles.path.read_text(encoding="utf-8")
    for tab in ("txt2img", "img2img"):
        assert _choices(saved[page.find(f"{tab}_styles")]) == ["film", "noir"]
        assert saved[page.find(f"{tab}_apply_styles")].constructor_args["visible"] is True
    assert "value" not in saved[page.find("img2img_edit_style_name")].constructor_args  # the other tab's stays
    assert saved[page.find("txt2img_edit_style_name")].constructor_args["value"] == "noir"

    applied = page.call("txt2img_edit_style_apply", "click", {
        "txt2img_prompt": "a cat", "txt2img_negative_prompt": "",
        "txt2img_edit_style_prompt": "{prompt}, black and white", "txt2img_edit_style_neg_prompt": "colour"})
    assert applied == ("a cat, black and white", "colour")

    deleted = page.call("img2img_edit_style_delete", "click", {"img2img_edit_style_name": "noir"})
    assert app.styles.get("noir") is None and _choices(deleted[page.find("txt2img_styles")]) == ["film"]
    backup = app.styles.path.with_name(app.styles.path.name + ".bak").read_text(encoding="utf-8")
    assert "noir" in backup  # the deleted style can be recovered
    with pytest.warns(UserWarning, match="Pick a saved style"):
        assert page.call("img2img_edit_style_delete", "click", {"img2img_edit_style_name": "noir"}) == {}
    with pytest.raises(gr.Error, match="name"):
        page.call("txt2img_edit_style_save", "click", {"txt2img_edit_style_name": "  "})
