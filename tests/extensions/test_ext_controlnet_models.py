"""ControlNet in the real App on a tiny SD 1.x checkpoint and a tiny ControlNet made from its UNet: the X/Y/Z plot's
"[ControlNet] ..." axes (cells equal separate jobs; values checked before the first cell), and the networks held
in the model manager's budgeted cache (loaded once for many jobs, evicted by the budget, keyed by the UNet)."""

from __future__ import annotations

import sys
from typing import Any, Iterator

import numpy as np
import pytest
from fastapi import FastAPI
from safetensors.torch import save_file

from modules.app import App
from modules.bootstrap import build_app
from modules.cli import LaunchOptions
from modules.errors import UserError
from modules.types import GenerationRequest
from tests.core.helpers import sample_image, write_tiny_checkpoint
from tests.extensions.helpers import tiny_controlnet

pytestmark = pytest.mark.slow  # real jobs on the tiny model

NOTHING = ["Nothing", "", []]
OPTIONS = [True, True, False, False, False, False, False, 0, False]  # legend, sub images, ..., csv mode


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    data = tmp_path_factory.mktemp("cn_models")
    write_tiny_checkpoint(data)
    from modules.models.convert import save_single_file
    from modules.models.tiny import build_tiny_components
    from tests.core.helpers import SDXL

    save_single_file(build_tiny_components(SDXL, seed=0), data / "models" / "Stable-diffusion" / "tinyxl.safetensors")
    app = build_app(LaunchOptions(data_dir=data))
    with app.models.get() as components:
        net = tiny_controlnet(components.unet)
    folder = data / "models" / "ControlNet"
    folder.mkdir(parents=True)
    state = {key: value.contiguous() for key, value in net.state_dict().items()}
    for name in ("tinycn", "other", "third"):
        save_file(state, str(folder / f"{name}.safetensors"))
    app.extensions.hooks.app_started(FastAPI())  # the extension learns the models folder
    yield app
    app.close()


def _unit(**fields: Any) -> dict[str, Any]:
    return {"enabled": True, "module": "none", "model": "tinycn", "weight": 0.5, "image": sample_image(64, 64, seed=5),
            "guidance_end": 0.8, **fields}


def _request(app: App, units: list[dict[str, Any]], script: tuple[str, list[Any]] | None = None,
             **fields: Any) -> GenerationRequest:
    values: dict[str, Any] = {"prompt": "a red cube", "negative_prompt": "blurry", "seed": 11, "steps": 3,
                              "width": 64, "height": 64, "sampler": "Euler", "cfg_scale": 6.0,
                              "checkpoint": "tiny.safetensors", **fields}
    base = GenerationRequest(**values)
    name, args = script if script is not None else (None, [])
    return app.extensions.scripts.request_from_api(name, args, {"controlnet": {"args": units}}, base)


def _pixels(image: Any) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def test_a_weight_axis_gives_the_cells_of_separate_jobs(app: App) -> None:
    plot = app.submit(_request(app, [_unit()], ("x/y/z plot", ["[ControlNet] Weight", "0, 1", [], *NOTHING,
                                                                *NOTHING, *OPTIONS]))).outcome(300)
    singles = [app.submit(_request(app, [_unit(weight=weight)])).outcome(300) for weight in (0.0, 1.0)]
    assert len(plot.images) == 3  # the grid, then the two cells
    for cell, single in zip(plot.images[1:], singles, strict=True):
        assert np.array_equal(_pixels(cell), _pixels(single.images[0]))
    assert not np.array_equal(_pixels(singles[0].images[0]), _pixels(singles[1].images[0]))
    assert "Weight: 1," in plot.infotexts[2] and "X Type: [ControlNet] Weight" in plot.infotexts[0]


def test_enabled_and_preprocessor_axes(app: App) -> None:
    plot = app.submit(_request(app, [_unit(enabled=False)], ("x/y/z plot", [
        "[ControlNet] Enabled", "False, True", [], "[ControlNet] Preprocessor", "", ["none", "Invert"],
        *NOTHING, *OPTIONS]))).outcome(300)
    plain = app.submit(_request(app, [])).outcome(300)
    inverted = app.submit(_request(app, [_unit(module="invert")])).outcome(300)
    off_none, on_none, off_invert, on_invert = plot.images[1:]
    assert np.array_equal(_pixels(off_none), _pixels(plain.images[0]))
    assert np.array_equal(_pixels(off_invert), _pixels(plain.images[0]))
    assert np.array_equal(_pixels(on_invert), _pixels(inverted.images[0]))  # "Invert" spelled as the dropdown does
    assert not np.array_equal(_pixels(on_none), _pixels(on_invert))


@pytest.mark.parametrize(("units", "axis", "values", "message"), [
    ([_unit()], "[ControlNet] Weight", "0, 5", "weight must be between 0.0 and 2.0, got 5.0"),
    ([], "[ControlNet] Weight", "0, 1", "changes ControlNet unit 0: set up unit 0"),
    ([_unit()], "[ControlNet] Guidance Start", "0.5, 0.9", "guidance_start (0.9) is after guidance_end (0.8)"),
    ([_unit(enabled=False, model="")], "[ControlNet] Enabled", "false, true", "choose its model first"),
    ([_unit()], "[ControlNet] Model", "tinycn, missing", "ControlNet model 'missing' not found"),
    ([_unit()], "[ControlNet] Control Mode", "Balanced, Loud", "control_mode 'Loud' is not one of"),
    ([_unit()], "[ControlNet] Enabled", "maybe", "[ControlNet] Enabled values 'maybe' are not valid"),
])
def test_axis_values_are_checked_before_the_first_cell(app: App, units: list[dict[str, Any]], axis: str,
                                                       values: str, message: str) -> None:
    job = app.submit(_request(app, units, ("x/y/z plot", [axis, values, [], *NOTHING, *NOTHING, *OPTIONS])))
    with pytest.raises(UserError) as caught:
        job.outcome(300)
    assert message in str(caught.value)


def test_networks_load_once_and_the_budget_evicts_them(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    script = sys.modules["sdwebui_extensions.controlnet.scripts.controlnet"]
    real, loads = script.load_controlnet, []
    monkeypatch.setattr(script, "load_controlnet", lambda path, unet: loads.append(path.stem) or real(path, unet))
    app.models.unload()
    cache = app.models.extension_models
    for _ in range(2):
        app.submit(_request(app, [_unit()])).outcome(300)
    assert loads == ["tinycn"] and len(cache) == 1  # the second job found it in the cache
    app.submit(_request(app, [_unit(), _unit(model="other")])).outcome(300)  # two networks in every step
    assert loads == ["tinycn", "other"] and len(cache) == 2
    freed = cache.freed
    app.submit(_request(app, [_unit(model="third")])).outcome(300)
    assert loads[-1] == "third" and len(cache) == 2 and cache.freed == freed + 1  # the budget evicted "tinycn"
    app.submit(_request(app, [_unit(model="other")])).outcome(300)
    assert len(loads) == 3  # "other" was kept
    app.submit(_request(app, [_unit()])).outcome(300)
    assert loads == ["tinycn", "other", "third", "tinycn"] and len(cache) == 2
    app.models.unload()
    assert len(cache) == 0


def test_a_network_of_another_family_fails_the_job_clearly(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    script = sys.modules["sdwebui_extensions.controlnet.scripts.controlnet"]
    real, loads = script.load_controlnet, []
    monkeypatch.setattr(script, "load_controlnet", lambda path, unet: loads.append(path.stem) or real(path, unet))
    before = app.submit(_request(app, [_unit()])).outcome(300)
    job = app.submit(_request(app, [_unit()], checkpoint="tinyxl.safetensors"))
    with pytest.raises(UserError, match="does not fit this checkpoint's UNet .* an SD 1.x one an SD 1.x checkpoint"):
        job.outcome(300)
    assert loads[-1] == "tinycn"  # the SD 1.x network cached for the SD 1.x UNet was not reused for SDXL's
    after = app.submit(_request(app, [_unit()])).outcome(300)  # the next job is not affected
    assert np.array_equal(_pixels(before.images[0]), _pixels(after.images[0]))
