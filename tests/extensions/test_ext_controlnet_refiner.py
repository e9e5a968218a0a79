"""ControlNet units with the SDXL refiner: they shape the base model's steps and leave the refiner's alone (as
sd-webui-controlnet does); the refiner's UNet is never offered a network made for the base (API 1.8
`UNetCallContext.refiner`)."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pytest
from fastapi import FastAPI
from safetensors.torch import save_file

from modules.app import App
from modules.bootstrap import build_app
from modules.cli import LaunchOptions
from modules.extensions import api
from modules.types import GenerationRequest
from tests.core.helpers import SDXL, SDXL_REFINER, sample_image
from tests.extensions.helpers import tiny_controlnet

pytestmark = pytest.mark.slow  # real jobs on tiny models


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    from modules.models.convert import save_single_file
    from modules.models.tiny import build_tiny_components

    data = tmp_path_factory.mktemp("cn_refiner")
    checkpoints = data / "models" / "Stable-diffusion"
    checkpoints.mkdir(parents=True)
    base = build_tiny_components(SDXL, seed=0)
    save_single_file(base, checkpoints / "xl.safetensors")
    save_single_file(build_tiny_components(SDXL_REFINER, seed=1), checkpoints / "refiner.safetensors")
    folder = data / "models" / "ControlNet"
    folder.mkdir(parents=True)
    net = tiny_controlnet(base.unet)
    save_file({key: value.contiguous() for key, value in net.state_dict().items()}, str(folder / "xlcn.safetensors"))
    app = build_app(LaunchOptions(data_dir=data))
    app.extensions.hooks.app_started(FastAPI())
    yield app
    app.close()


def _request(app: App, units: list[dict[str, Any]]) -> GenerationRequest:
    base = GenerationRequest(prompt="a red cube", negative_prompt="blurry", seed=3, steps=4, width=64, height=64,
                             sampler="Euler", checkpoint="xl.safetensors", refiner_checkpoint="refiner.safetensors",
                             refiner_switch_at=0.5)
    return app.extensions.scripts.request_from_api(None, [], {"controlnet": {"args": units}}, base)


def _picture(app: App, units: list[dict[str, Any]]) -> np.ndarray:
    return np.asarray(app.submit(_request(app, units)).outcome(300).images[0].convert("RGB")).astype(int)


def test_units_shape_the_base_steps_and_leave_the_refiner_alone(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    original = api.UNetCallContext.add_residuals

    def counting(self: api.UNetCallContext, *args: Any, **kwargs: Any) -> None:
        calls.append(self.refiner)
        original(self, *args, **kwargs)
    monkeypatch.setattr(api.UNetCallContext, "add_residuals", counting)
    unit = {"enabled": True, "module": "none", "model": "xlcn", "weight": 1.0, "image": sample_image(64, 64, seed=5)}
    with_unit = _picture(app, [unit])
    assert calls and not any(calls)  # residuals on the base model's calls only
    assert len(calls) == 2  # 4 steps, the refiner from the middle: 2 base steps (prompt and negative in one call)
    assert np.abs(with_unit - _picture(app, [])).mean() > 0
