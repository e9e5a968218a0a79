"""Upscaler model files through the real app over HTTP: listed in A1111's shape, used by hires fix, broken files
refused with the reason, and held in the model manager's cache (freed by unload)."""

from __future__ import annotations

import gc

import pytest

from tests.api.api_helpers import serving
from tests.api.test_real_app import SMALL, decode, make_real_app
from tests.upscalers.helpers import save_compact


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("upscalers_api")
    app = make_real_app(data_dir)
    save_compact(data_dir / "models" / "RealESRGAN" / "RealESRGAN_x2plus.pth", scale=2)
    (data_dir / "models" / "ESRGAN").mkdir(parents=True)
    (data_dir / "models" / "ESRGAN" / "broken.safetensors").write_bytes(b"\x00" * 10)
    with serving(app) as client:
        yield app, client


def test_upscalers_lists_model_files_in_a1111s_shape(served):
    app, client = served
    rows = client.get("/sdapi/v1/upscalers").json()
    assert [row["name"] for row in rows] == ["None", "Lanczos", "Nearest", "RealESRGAN_x2plus"]
    assert rows[-1] == {"name": "RealESRGAN_x2plus", "model_name": "RealESRGAN", "scale": 2.0, "model_url": None,
                        "model_path": str(app.paths.models / "RealESRGAN" / "RealESRGAN_x2plus.pth")}


@pytest.mark.slow
def test_hires_fix_with_a_model_upscaler_over_http_and_the_cache(served):
    app, client = served
    body = {**SMALL, "prompt": "red square", "seed": 5, "enable_hr": True, "hr_upscaler": "RealESRGAN_x2plus",
            "denoising_strength": 0.4, "hr_second_pass_steps": 2}
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert decode(data["images"][0]).size == (128, 128)
    assert "Hires upscaler: RealESRGAN_x2plus" in data["info"]
    assert len(app.models.upscaler_models) == 1  # kept loaded for the next job, in the manager's cache
    freed = app.models.upscaler_models.freed
    app.models.unload()
    gc.collect()
    assert len(app.models.upscaler_models) == 0 and app.models.upscaler_models.freed == freed + 1


def test_a_broken_or_absent_file_is_a_422_with_the_reason(served):
    _, client = served
    for name, words in (("broken", "broken.safetensors"), ("4x_foolhardy_Remacri", "models/ESRGAN")):
        response = client.post("/sdapi/v1/txt2img", json={**SMALL, "enable_hr": True, "hr_upscaler": name})
        assert response.status_code == 422
        assert words in response.text
