"""A1111's Extras routes over real HTTP on the real app: extra-single-image and extra-batch-images (sizes, the
postprocessing text in html_info and the PNG, the source's parameters kept), an upscaler model file, errors,
realesrgan-models and face-restorers."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from tests.api.api_helpers import serving
from tests.api.test_real_app import b64_png, decode, make_real_app
from tests.upscalers.helpers import save_compact

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("extras_api")
    app = make_real_app(data_dir)
    save_compact(data_dir / "models" / "RealESRGAN" / "RealESRGAN_x2plus.pth", scale=2)
    with serving(app) as client:
        yield app, client


def _picture(seed: int = 0, width: int = 40, height: int = 32) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _with_parameters(image: Image.Image, text: str) -> str:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def test_single_image_scale_by_keeps_the_parameters_and_adds_the_extras_text(served) -> None:
    _, client = served
    source = _picture()
    body = {"image": _with_parameters(source, "a cat\nSteps: 3, Seed: 5"), "upscaling_resize": 2,
            "upscaler_1": "Lanczos"}
    response = client.post("/sdapi/v1/extra-single-image", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    picture = decode(data["image"])
    assert picture.size == (80, 64)
    expected = source.resize((80, 64), resample=Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(picture.convert("RGB")), np.asarray(expected))
    assert data["html_info"] == "<p>Postprocess upscale by: 2, Postprocess upscaler: Lanczos</p>"
    assert picture.info["extras"] == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    assert picture.info["parameters"] == "a cat\nSteps: 3, Seed: 5"


def test_batch_with_a_model_file_and_scale_to(served) -> None:
    _, client = served
    body = {"imageList": [{"data": b64_png(_picture(1)), "name": "one.png"},
                          {"data": b64_png(_picture(2)), "name": "two.png"}],
            "resize_mode": 1, "upscaling_resize_w": 96, "upscaling_resize_h": 64, "upscaling_crop": True,
            "upscaler_1": "RealESRGAN_x2plus", "upscaler_2": "Nearest", "extras_upscaler_2_visibility": 0.5}
    response = client.post("/sdapi/v1/extra-batch-images", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert [decode(text).size for text in data["images"]] == [(96, 64), (96, 64)]
    assert "Postprocess upscaler: RealESRGAN_x2plus, Postprocess upscaler 2: Nearest" in data["html_info"]


@pytest.mark.parametrize(("body", "status", "text"), [
    ({"upscaler_1": "Latent"}, 422, "latent upscaler"),
    ({"upscaler_1": "4x_nowhere"}, 422, "4x_nowhere"),
    ({"gfpgan_visibility": 0.5}, 400, "Face restoration"),
    ({"upscaling_resize": 20}, 422, "upscaling_resize"),
    ({"image": "***"}, 400, "image"),
])
def test_errors_are_4xx_with_a_message(served, body, status, text) -> None:
    _, client = served
    response = client.post("/sdapi/v1/extra-single-image", json={"image": b64_png(_picture()), **body})
    assert response.status_code == status and text in response.text


def test_lists(served) -> None:
    app, client = served
    assert client.get("/sdapi/v1/face-restorers").json() == []
    assert client.get("/sdapi/v1/realesrgan-models").json() == [
        {"name": "RealESRGAN_x2plus", "path": str(app.paths.models / "RealESRGAN" / "RealESRGAN_x2plus.pth"),
         "scale": 2}]
