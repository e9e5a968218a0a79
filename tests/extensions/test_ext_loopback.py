"""Loopback (built-in img2img extension) over real HTTP on a tiny model, as A1111 API clients call it (`script_name`
and A1111's positional `script_args`): each loop img2imgs the previous loop's picture with the next seed and the
denoising strength of the curve, the grid first, batch count keeping each run's last picture, the caption appended
from a (tiny) BLIP model, errors as 4xx; and the denoising-strength curves themselves."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from modules.app import App
from modules.bootstrap import build_app
from modules.cli import LaunchOptions
from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
from modules.extensions.loader import ExtensionRoot
from modules.interrogate import CAPTION_FOLDER
from tests.api.api_helpers import serving
from tests.captioning import WORDS, save_tiny_blip
from tests.core.helpers import write_tiny_checkpoint

TITLE = "Loopback"
SMALL = {"width": 64, "height": 64, "steps": 2, "sampler_name": "Euler", "cfg_scale": 5}


@pytest.fixture(scope="module")
def script() -> Any:
    host = ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)])
    host.load()
    return sys.modules["sdwebui_extensions.loopback.scripts.loopback"]


def test_denoising_curves_follow_a1111(script: Any) -> None:
    def curve(name: str, loops: int = 4) -> list[float]:
        return [round(script.denoising_strength(i, loops, 0.8, 0.2, name), 6) for i in range(loops)]

    assert curve("Linear") == [0.8, 0.6, 0.4, 0.2]
    aggressive, lazy = curve("Aggressive"), curve("Lazy")
    assert aggressive[0] == lazy[0] == 0.8 and aggressive[-1] == lazy[-1] == 0.2
    assert aggressive[1] == round(0.8 - 0.6 * math.sin(math.pi / 6), 6) == 0.5  # fast at first
    assert lazy[1] == round(0.8 - 0.6 * (1 - math.cos(math.pi / 6)), 6)  # slow at first
    assert aggressive[1] < curve("Linear")[1] < lazy[1]
    assert curve("Linear", 1) == [0.8]  # one loop: the request's strength
    assert script.denoising_strength(1, 2, 0.3, 0.7, "Linear") == pytest.approx(0.7)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, httpx.Client, Path]]:
    data = tmp_path_factory.mktemp("loopback")
    write_tiny_checkpoint(data)
    app = build_app(LaunchOptions(data_dir=data, api=True))
    with serving(app, timeout=300) as client:
        yield app, client, data


def _init_image() -> str:
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _post(client: httpx.Client, args: list[Any], endpoint: str = "img2img", **fields: Any) -> httpx.Response:
    body = {**SMALL, "script_name": TITLE, "script_args": args, **fields}
    if endpoint == "img2img":
        body.setdefault("init_images", [_init_image()])
    return client.post(f"/sdapi/v1/{endpoint}", json=body)


def _run(client: httpx.Client, args: list[Any], **fields: Any) -> tuple[list[Image.Image], dict]:
    response = _post(client, args, **fields)
    assert response.status_code == 200, response.text
    data = response.json()
    return [Image.open(io.BytesIO(base64.b64decode(text))) for text in data["images"]], json.loads(data["info"])


def _strength(text: str) -> float:
    found = re.search(r"Denoising strength: ([0-9.]+)", text)
    assert found, text
    return float(found.group(1))


@pytest.mark.slow
def test_each_loop_feeds_the_next_with_its_seed_and_strength(served) -> None:
    _, client, _ = served
    listed = client.get("/sdapi/v1/scripts").json()
    assert TITLE.lower() in listed["img2img"] and TITLE.lower() not in listed["txt2img"]
    pictures, info = _run(client, [3, 0.3, "Linear", "None"], prompt="a cube", seed=10, denoising_strength=0.9,
                          batch_size=2)
    assert len(pictures) == 4 and pictures[0].size == (3 * 64, 64)  # the grid (one row), then the 3 loops
    assert info["all_seeds"] == [10, 10, 11, 12]
    texts = info["infotexts"]
    assert [_strength(text) for text in texts[1:]] == pytest.approx([0.9, 0.6, 0.3])
    assert all("Final denoising strength: 0.3" in text and "Denoising curve: Linear" in text for text in texts)
    loops = [np.asarray(picture, dtype=np.int16) for picture in pictures[1:]]
    assert all(np.abs(a - b).mean() > 1 for a, b in zip(loops, loops[1:]))  # every loop changes the picture
    assert np.array_equal(np.asarray(pictures[0])[:, 64:128], loops[1].astype(np.uint8))  # grid cell = loop 2


@pytest.mark.slow
def test_curves_and_batch_count_keep_the_last_of_each_run(served) -> None:
    _, client, _ = served
    _, info = _run(client, [4, 0.2, "Aggressive", "None"], seed=5, denoising_strength=0.8)
    assert [_strength(text) for text in info["infotexts"][1:]] == pytest.approx([0.8, 0.5, 0.280385, 0.2], abs=1e-5)
    pictures, info = _run(client, [2, 0.4, "Lazy", "None"], seed=20, denoising_strength=0.6, n_iter=2)
    # batch count 2: two runs of 2 loops (seeds 20, 21 then 22, 23); each run's last picture, after their grid
    assert len(pictures) == 3 and info["all_seeds"] == [21, 21, 23]
    assert [_strength(text) for text in info["infotexts"][1:]] == pytest.approx([0.4, 0.4])


@pytest.mark.slow
def test_interrogated_prompt_is_appended_each_loop(served) -> None:
    _, client, data = served
    missing = _post(client, [2, 0.5, "Linear", "CLIP"], prompt="a cube")
    assert 400 <= missing.status_code < 500 and "captioning model" in missing.text
    assert str(data / "models" / CAPTION_FOLDER) in missing.json()["detail"]
    save_tiny_blip(data / "models" / CAPTION_FOLDER / "blip-tiny")
    _, info = _run(client, [2, 0.5, "Linear", "CLIP"], prompt="a cube", seed=3)
    for prompt in info["all_prompts"][1:]:
        assert prompt.startswith("a cube, ") and set(prompt[len("a cube, "):].split()) <= set(WORDS)
    assert info["infotexts"][1].startswith(info["all_prompts"][1] + "\n")


@pytest.mark.slow
def test_errors_are_4xx(served) -> None:
    _, client, _ = served
    txt2img = _post(client, [2, 0.5, "Linear", "None"], endpoint="txt2img")
    assert 400 <= txt2img.status_code < 500 and "'Loopback' works in img2img only" in txt2img.text, txt2img.text
    for args, text in (([0, 0.5, "Linear", "None"], "loops must be a whole number of at least 1"),
                       ([2.5, 0.5, "Linear", "None"], "loops must be a whole number"),
                       ([2, 1.5, "Linear", "None"], "between 0 and 1"),
                       ([2, 0.5, "Wobbly", "None"], "unknown denoising strength curve"),
                       ([2, 0.5, "Linear", "DeepBooru"], "DeepBooru is not available"),
                       ([2, 0.5, "Linear", "None", 1], "at most 4")):
        response = _post(client, args)
        assert 400 <= response.status_code < 500 and text in response.text, response.text
