"""`POST /sdapi/v1/interrogate` over real HTTP on the real app: a caption from a (tiny, random) BLIP model in
models/BLIP, A1111's body and answer, the errors (no model naming the folder, DeepDanbooru, unknown model, bad
image), and that nothing is downloaded (the model is read with `local_files_only`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modules.interrogate import CAPTION_FOLDER, find_caption_model
from tests.api.api_helpers import serving
from tests.api.test_real_app import b64_png, make_real_app
from tests.captioning import WORDS, save_tiny_blip

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("interrogate_api")
    app = make_real_app(data_dir)
    with serving(app) as client:
        yield app, client, data_dir


def _picture(seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8))


def test_without_a_captioning_model_the_error_names_the_folder(served) -> None:
    _, client, data_dir = served
    response = client.post("/sdapi/v1/interrogate", json={"image": b64_png(_picture())})
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "ModelNotFound" and str(data_dir / "models" / CAPTION_FOLDER) in body["detail"]
    assert "Nothing is downloaded" in body["detail"]


def test_caption_from_the_blip_model_in_the_models_folder(served) -> None:
    app, client, data_dir = served
    save_tiny_blip(data_dir / "models" / CAPTION_FOLDER / "blip-tiny")
    assert find_caption_model(data_dir / "models") == data_dir / "models" / CAPTION_FOLDER / "blip-tiny"
    response = client.post("/sdapi/v1/interrogate", json={"image": b64_png(_picture()), "model": "clip"})
    assert response.status_code == 200, response.text
    caption = response.json()["caption"]
    assert set(response.json()) == {"caption"} and caption
    assert set(caption.split()) <= set(WORDS)
    again = client.post("/sdapi/v1/interrogate", json={"image": b64_png(_picture())})
    assert again.json()["caption"] == caption  # greedy decoding: the same picture gives the same caption
    assert len(app.models.caption_models) == 1  # loaded once, kept in the model manager's cache


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"model": "deepdanbooru"}, 404, "DeepDanbooru is not available"),
    ({"model": "wd14"}, 404, "Model not found: 'wd14'"),
    ({"image": ""}, 400, "image is empty"),
    ({"image": "bm90IGFuIGltYWdl"}, 400, "does not hold a readable image"),
])
def test_errors(served, body: dict, status: int, words: str) -> None:
    _, client, _ = served
    response = client.post("/sdapi/v1/interrogate", json={"image": b64_png(_picture()), **body})
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_a_broken_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    from modules.errors import InvalidRequest
    from modules.interrogate import CaptionModel

    folder = tmp_path / CAPTION_FOLDER
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "blip"}', encoding="utf-8")
    assert find_caption_model(tmp_path) == folder
    import torch

    with pytest.raises(InvalidRequest, match="cannot be loaded"):
        CaptionModel.load(folder, torch.device("cpu"), torch.float32)
