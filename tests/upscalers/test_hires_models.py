"""Hires. fix with an upscaler model file: txt2img -> decode -> model upscale -> encode -> img2img, and a stop
during the upscale keeps the first pass's pictures."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image

from modules.cancel import CancelToken
from modules.core.generate import generate
from modules.upscalers.model_files import load_model, run_model
from modules.upscalers.registry import UpscalerRegistry
from tests.core.helpers import SD1, tiny
from tests.core.test_hires import EULER, _first_pass, _hires, _img2img_by_hand, _same
from tests.upscalers.helpers import save_compact


def _registry(models_dir, loads=None):
    @contextmanager
    def hold(path):
        if loads is not None:
            loads.append(path.name)
        yield load_model(path, torch.device("cpu"), torch.float32)
    return UpscalerRegistry(models_dir, hold=hold)


@pytest.mark.slow
def test_model_upscaler_equals_txt2img_decode_upscale_encode_img2img(tmp_path, monkeypatch):
    path = save_compact(tmp_path / "models" / "ESRGAN" / "4x-tiny.pth", scale=4)
    request = _hires(hr_upscaler="4x-tiny")
    first, _ = _first_pass(request, monkeypatch)
    model = load_model(path, torch.device("cpu"), torch.float32)
    enlarged = run_model(model, first, 0, 0)  # 64 -> 256, then Lanczos to the 128 target
    upscaled = enlarged.resize((128, 128), resample=Image.Resampling.LANCZOS)
    by_hand = generate(_img2img_by_hand(request, upscaled), tiny(SD1), EULER)
    loads: list[str] = []
    result = generate(request, tiny(SD1), EULER, upscalers=_registry(tmp_path / "models", loads))
    _same(result.images[0], by_hand.images[0])
    assert loads == ["4x-tiny.pth"]


@pytest.mark.slow
def test_a_stop_during_the_model_upscale_keeps_the_first_pass(tmp_path, monkeypatch):
    save_compact(tmp_path / "models" / "ESRGAN" / "2x-tiny.pth", scale=2)
    request = _hires(hr_upscaler="2x-tiny")
    first, _ = _first_pass(request, monkeypatch)
    cancel = CancelToken()
    registry = _registry(tmp_path / "models")
    original = registry.hold

    @contextmanager
    def hold_then_interrupt(path):
        with original(path) as model:
            cancel.interrupt()  # the user presses Interrupt while the network loads
            yield model
    registry.hold = hold_then_interrupt
    output = generate(request, tiny(SD1), EULER, upscalers=registry, cancel=cancel)
    assert output.images[0].size == (64, 64)
    assert np.array_equal(np.asarray(output.images[0]), np.asarray(first))


@pytest.mark.slow
def test_tiles_are_reported_as_progress_of_the_second_pass(tmp_path):
    from modules.core.plan import CoreOptions
    from modules.types import ProgressEvent

    save_compact(tmp_path / "models" / "ESRGAN" / "2x-tiny.pth", scale=2)
    events: list[ProgressEvent] = []
    request = _hires(hr_upscaler="2x-tiny", steps=1)
    generate(request, tiny(SD1), EULER, upscalers=_registry(tmp_path / "models"), on_progress=events.append,
             options=CoreOptions(ESRGAN_tile=32, ESRGAN_tile_overlap=4))
    tiles = [(e.step, e.total_steps, e.job_no, e.job_count) for e in events if e.textinfo.startswith("Upscaling")]
    assert tiles == [(1, 4, 1, 2), (2, 4, 1, 2), (3, 4, 1, 2), (4, 4, 1, 2)]  # 64 px in 32 px tiles
    assert events[-1].textinfo == "" and events[-1].job_no == 1
