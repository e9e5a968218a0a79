"""PNG Info -> Send to txt2img reproduces a picture made here, for every sampler.

A real application on a tiny SD 1.x checkpoint generates with each sampler, saves the PNG, the PNG's `parameters`
are read back as PNG Info reads them and pasted into txt2img's widget values as "Send to txt2img" does; the request
those widgets make generates the same pixels.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from modules import images
from modules.app import App
from modules.bootstrap import build_app
from modules.cli import LaunchOptions
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest
from modules.ui import bind
from modules.ui.paste import values_from_infotext
from tests.core.helpers import write_tiny_checkpoint

SAMPLERS = default_registry().visible()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    data = tmp_path_factory.mktemp("paste_app")
    write_tiny_checkpoint(data)
    application = build_app(LaunchOptions(data_dir=data))
    yield application
    application.close()


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


@pytest.mark.slow
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_pasted_infotext_reproduces_the_pixels(app: App, sampler: str, tmp_path: Path) -> None:
    request = GenerationRequest(prompt="a red cube, (shiny:1.2)", negative_prompt="blurry", steps=4, width=64,
                                height=64, cfg_scale=5.5, seed=-1, sampler=sampler, schedule="Automatic")
    first = app.submit(request, save=False).outcome(180)
    images.save_image(first.images[0], tmp_path, seed=first.seeds[0], infotext=first.infotexts[0])
    text = images.read_infotext(Image.open(io.BytesIO(next(tmp_path.glob("*.png")).read_bytes())))
    assert text is not None and f"Sampler: {sampler}," in text

    widgets = bind.values_from_request(GenerationRequest(), bind.BOUND_NAMES)
    pasted = values_from_infotext(default_registry(), text, widgets)
    assert not pasted.warnings
    again = bind.request_from_values({**widgets, **pasted.values}, GenerationRequest())
    assert (again.sampler, again.seed) == (sampler, first.seeds[0])
    second = app.submit(again, save=False).outcome(180)
    assert np.array_equal(_pixels(second.images[0]), _pixels(first.images[0]))
    assert second.infotexts[0] == first.infotexts[0]


@pytest.mark.slow
@pytest.mark.parametrize(("source", "written"), [("NV", "RNG: NV"), ("CPU", "RNG: CPU")])
def test_rng_source_is_written_as_a1111_writes_it(app: App, source: str, written: str) -> None:
    request = GenerationRequest(prompt="a cube", steps=3, width=64, height=64, seed=5, sampler="DPM2 a",
                                overrides={"randn_source": source})
    result = app.submit(request, save=False).outcome(180)
    assert written in result.infotexts[0]
    other = app.submit(request.with_changes(overrides={"randn_source": "CPU" if source == "NV" else "NV"}),
                       save=False).outcome(180)
    assert not np.array_equal(_pixels(other.images[0]), _pixels(result.images[0]))


@pytest.mark.slow
def test_pasted_rng_and_ensd_reproduce_the_pixels(app: App, tmp_path: Path) -> None:
    """A picture made with RNG NV and an ENSD: both are written to its infotext (A1111's keys), and pasting it sets
    them as the tab's override settings, so the picture comes back."""
    request = GenerationRequest(prompt="a cube", steps=4, width=64, height=64, seed=-1, sampler="Euler a",
                                overrides={"randn_source": "NV", "eta_noise_seed_delta": 31337})
    first = app.submit(request, save=False).outcome(180)
    assert "ENSD: 31337, RNG: NV" in first.infotexts[0]
    widgets = bind.values_from_request(GenerationRequest(), bind.BOUND_NAMES)
    pasted = values_from_infotext(default_registry(), first.infotexts[0], widgets)
    assert pasted.values["override_settings"] == ["RNG: NV", "ENSD: 31337"]
    again = bind.request_from_values({**widgets, **pasted.values}, GenerationRequest())
    second = app.submit(again, save=False).outcome(180)
    assert np.array_equal(_pixels(second.images[0]), _pixels(first.images[0]))
    plain = app.submit(again.with_changes(overrides={}), save=False).outcome(180)
    assert not np.array_equal(_pixels(plain.images[0]), _pixels(first.images[0]))
