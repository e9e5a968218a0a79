"""Save and Zip under both galleries, through the built page's handlers."""

from __future__ import annotations

from pathlib import Path

import pytest

from modules.types import GenerationRequest
from tests.ui.fakes import FakeApp, fake_result
from tests.ui.helpers import Page


@pytest.mark.parametrize("tab", ["txt2img", "img2img"])
def test_save_and_zip_offer_the_files_and_say_so(page: Page, app: FakeApp, tab: str) -> None:
    fn = page.handler(page.find(f"save_{tab}"), "click")
    state_result, state_selected = fn.inputs
    with pytest.warns(UserWarning, match="generate one first"):
        page.call(f"save_{tab}", "click")
    result = fake_result(GenerationRequest(prompt="a fox", seed=7, batch_size=2, width=8, height=8))
    update = page.call(f"save_{tab}", "click", extra={state_result: result, state_selected: 1})
    assert update.constructor_args["visible"] is True
    assert [Path(value).name for value in update.constructor_args["value"]] == ["00000-8.png"]
    archive = page.call(f"save_zip_{tab}", "click", extra={state_result: result, state_selected: None})
    [zipped] = archive.constructor_args["value"]
    assert zipped.endswith("_[tiny]_7-8.zip") and Path(zipped).parent == app.paths.data_dir / "log" / "images"
