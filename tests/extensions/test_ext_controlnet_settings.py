"""ControlNet's settings (A1111's "ControlNet" section, through the extension API's UI_SETTINGS hook):
`control_net_unit_count` sets the unit tabs the page builds, the units a job accepts and what `/controlnet/settings`
answers; `control_net_model_cache_size` is the model manager's budget of extension networks;
`control_net_inpaint_blur_sigma` is inpaint_only's final blend (tests/extensions/test_ext_controlnet_modes.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import gradio as gr
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modules.app import App
from modules.bootstrap import build_app
from modules.cli import LaunchOptions
from modules.errors import UserError
from modules.models.manager import ModelOptions
from modules.types import GenerationRequest


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    app = build_app(LaunchOptions(data_dir=tmp_path))
    yield app
    app.close()


def _request(app: App, units: list[dict[str, Any]]) -> GenerationRequest:
    base = GenerationRequest(prompt="a cube", steps=2, width=64, height=64)
    return app.extensions.scripts.request_from_api(None, [], {"controlnet": {"args": units}}, base)


def _unit_tabs(app: App) -> int:
    (entry,) = [e for e in app.extensions.scripts.entries("txt2img", always_on=True) if e.name == "controlnet"]
    with gr.Blocks():
        controls = app.extensions.scripts.build(entry, "txt2img")
    names = controls["units"].controls
    assert len(names) % 14 == 0  # fourteen controls per unit tab in txt2img
    return len(names) // 14


def test_the_settings_section_with_a1111s_keys_and_defaults(app: App) -> None:
    settings = app.settings.get()
    section = {spec.key: spec for spec in settings.table.sections()["ControlNet"]}
    assert set(section) == {"control_net_unit_count", "control_net_model_cache_size", "control_net_inpaint_blur_sigma"}
    assert settings["control_net_unit_count"] == 3 and settings["control_net_model_cache_size"] == 2
    assert settings["control_net_inpaint_blur_sigma"] == 7
    assert section["control_net_unit_count"].label.startswith("Multi-ControlNet")
    with pytest.raises(UserError):
        app.settings.update({"control_net_unit_count": 0}, persist=False)


@pytest.mark.slow
def test_the_unit_count_sets_the_page_the_api_and_the_route(app: App) -> None:
    server = FastAPI()
    app.extensions.hooks.app_started(server)
    client = TestClient(server)
    assert client.get("/controlnet/settings").json() == {"control_net_unit_count": 3}
    assert _unit_tabs(app) == 3
    four = [{"enabled": False}] * 4
    with pytest.raises(UserError, match=r"at most 3 units \(setting `control_net_unit_count`\), got 4"):
        app.extensions.hooks.before_job(_request(app, four), app.settings.get())

    app.settings.update({"control_net_unit_count": 5}, persist=False)
    assert client.get("/controlnet/settings").json() == {"control_net_unit_count": 5}
    assert _unit_tabs(app) == 5
    request = app.extensions.hooks.before_job(_request(app, four), app.settings.get())
    assert len(request.extension_args["controlnet"]["units"]) == 4
    with pytest.raises(UserError, match="at most 5 units"):
        app.extensions.hooks.before_job(_request(app, [{"enabled": False}] * 6), app.settings.get())


@pytest.mark.slow
def test_the_cache_size_is_the_managers_budget_of_extension_networks(app: App) -> None:
    assert ModelOptions().control_net_model_cache_size == 2
    cache = app.models.extension_models
    assert cache.limit == 2
    app.settings.update({"control_net_model_cache_size": 4}, persist=False)
    assert cache.limit == 4
    loaded = [torch.nn.Linear(1, 1) for _ in range(4)]
    for index, network in enumerate(loaded):
        with app.models.hold_extension_model(("net", index), lambda network=network: network) as held:
            assert held is network
    assert len(cache) == 4
    app.settings.update({"control_net_model_cache_size": 1}, persist=False)
    assert cache.limit == 1 and len(cache) == 1  # the least recently used ones went at once
    with app.models.hold_extension_model(("net", 3), lambda: pytest.fail("evicted")) as held:
        assert held is loaded[3]
