"""The Checkpoint Merger tab on a real App with tiny checkpoints: Merge through the page's handler, the new file
listed in the tab's and the top row's checkpoint lists, refusals as messages."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import gradio as gr
import pytest
import torch

from modules.app import App
from modules.models.state_dict import read_state_dict
from modules.ui.layout import build_ui
from modules.ui.tokens import TokenCounter
from tests.ui.helpers import Page, merged, run_to_end, two_checkpoint_app


@pytest.fixture
def real(tmp_path: Path, token_counter: TokenCounter) -> Iterator[tuple[App, Page]]:
    app = two_checkpoint_app(tmp_path)
    try:
        yield app, Page(build_ui(app, tokens=token_counter))
    finally:
        app.close()


@pytest.mark.slow
def test_merge_writes_the_checkpoint_and_lists_it(real: tuple[App, Page]) -> None:
    app, page = real
    titles = [record.title for record in app.models.list_checkpoints()]
    updates = merged(run_to_end(page.call("modelmerger_merge", "click", {
        "modelmerger_primary_model_name": titles[0], "modelmerger_secondary_model_name": titles[1],
        "modelmerger_custom_name": "blend", "modelmerger_interp_amount": 0.5})))
    path = app.models.catalog.roots.checkpoint_dirs[0] / "blend.safetensors"
    assert "Checkpoint saved to" in updates[page.find("modelmerger_result")] and path.is_file()
    a, b, blend = (read_state_dict(app.models.resolve_checkpoint(name).path) for name in ("tiny-a", "tiny-b", "blend"))
    key = "model.diffusion_model.out.2.weight"
    assert torch.equal(blend[key], a[key] * 0.5 + b[key] * 0.5)
    new_titles = [record.title for record in app.models.list_checkpoints()]
    assert len(new_titles) == 3
    for elem_id in ("modelmerger_primary_model_name", "setting_sd_model_checkpoint"):  # the top row's list too
        choices = updates[page.find(elem_id)].constructor_args["choices"]
        assert [choice[0] if isinstance(choice, tuple) else choice for choice in choices] == new_titles


@pytest.mark.slow
def test_refusals_are_messages(real: tuple[App, Page]) -> None:
    app, page = real
    with pytest.raises(gr.Error, match="primary model"):
        run_to_end(page.call("modelmerger_merge", "click"))
    title = app.models.list_checkpoints()[0].title
    with pytest.raises(gr.Error, match="needs a secondary model"):
        run_to_end(page.call("modelmerger_merge", "click", {"modelmerger_primary_model_name": title}))
    assert len(app.models.list_checkpoints()) == 2
