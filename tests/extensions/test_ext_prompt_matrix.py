"""Prompt matrix (built-in extension) over real HTTP on a tiny model, as A1111 API clients call it (`script_name`
and A1111's positional `script_args`): one picture per combination of the `|` parts in A1111's order, the grid
first, the same seed or one per picture, the negative prompt split instead, errors as 4xx; and the combination
and grid functions themselves."""

from __future__ import annotations

import base64
import io
import json
import sys
from typing import Any, Iterator

import httpx
import pytest
from PIL import Image

from modules.app import App
from modules.bootstrap import build_app
from modules.cli import LaunchOptions
from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
from modules.extensions.loader import ExtensionRoot
from tests.api.api_helpers import serving
from tests.core.helpers import write_tiny_checkpoint

TITLE = "Prompt matrix"
SMALL = {"width": 64, "height": 64, "steps": 2, "sampler_name": "Euler", "cfg_scale": 5}


@pytest.fixture(scope="module")
def script() -> Any:
    host = ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)])
    host.load()
    return sys.modules["sdwebui_extensions.prompt_matrix.scripts.prompt_matrix"]


def test_combinations_in_a1111_order(script: Any) -> None:
    assert script.matrix_prompts("a cat|red|hat") == ["a cat", "a cat, red", "a cat, hat", "a cat, red, hat"]
    # the first part is kept as written, the optional ones lose spaces and commas around them
    assert script.matrix_prompts("a cat | red, | ,hat ") == ["a cat ", "a cat , red", "a cat , hat",
                                                             "a cat , red, hat"]
    assert script.matrix_prompts("cat|red|hat", put_at_start=True, delimiter=" ") == [
        "cat", "red cat", "hat cat", "red hat cat"]
    assert script.matrix_prompts("no parts") == ["no parts"]
    assert len(script.matrix_prompts("a|b|c|d|e")) == 16
    assert script.matrix_prompts("a|b|c|d")[0b101] == "a, b, d"


def test_grid_shape_and_labels(script: Any) -> None:
    assert [script.grid_shape(k) for k in range(5)] == [(1, 1), (2, 1), (2, 2), (4, 2), (4, 4)]
    cells = [Image.new("RGB", (64, 64), (40 * i, 0, 0)) for i in range(8)]
    grid = script.matrix_grid(cells, ["red", "hat", "big"], margin=4)
    # 4 columns (red, hat), 2 rows (big); labels above and left of the cells
    assert grid.width > 4 * 64 + 3 * 4 and grid.height > 2 * 64 + 4
    left, top = grid.width - (4 * 64 + 3 * 4), grid.height - (2 * 64 + 4)
    assert grid.getpixel((left + 2 * 68 + 10, top + 10)) == (80, 0, 0)  # combination 2 = column 2, row 0
    assert grid.getpixel((left + 1 * 68 + 10, top + 68 + 10)) == (200, 0, 0)  # combination 5 = column 1, row 1
    label_band = grid.crop((left, 0, grid.width, top)).convert("L")
    assert label_band.getextrema()[0] < 100  # some dark text is drawn
    lone = script.matrix_grid([cells[1]], [], margin=0)
    assert lone.size == (64, 64)  # no optional part: no labels
    partial = script.matrix_grid([cells[1], None], ["red"])
    assert partial.getpixel((partial.width - 10, partial.height - 10)) == (0, 0, 0)  # not generated: black


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, httpx.Client]]:
    data = tmp_path_factory.mktemp("prompt_matrix")
    write_tiny_checkpoint(data)
    app = build_app(LaunchOptions(data_dir=data, api=True))
    with serving(app, timeout=300) as client:
        yield app, client


def _run(client: httpx.Client, args: list[Any], endpoint: str = "txt2img", **fields: Any
         ) -> tuple[list[Image.Image], dict]:
    body = {**SMALL, "script_name": TITLE, "script_args": args, **fields}
    response = client.post(f"/sdapi/v1/{endpoint}", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    pictures: list[Image.Image] = [Image.open(io.BytesIO(base64.b64decode(text))) for text in data["images"]]
    return pictures, json.loads(data["info"])


@pytest.mark.slow
def test_every_combination_then_the_grid_first(served) -> None:
    _, client = served
    listed = client.get("/sdapi/v1/scripts").json()
    assert TITLE.lower() in listed["txt2img"] and TITLE.lower() in listed["img2img"]
    pictures, info = _run(client, [False, False, "positive", "comma", 0], prompt="a cube|red|shiny", seed=42,
                          batch_size=3)
    assert len(pictures) == 5 and pictures[0].size[0] > 128 and all(p.size == (64, 64) for p in pictures[1:])
    assert info["all_prompts"][1:] == ["a cube", "a cube, red", "a cube, shiny", "a cube, red, shiny"]
    assert info["all_seeds"] == [42] * 5
    texts = info["infotexts"]
    assert texts[0] == texts[1] and texts[2].startswith("a cube, red\n") and "Seed: 42," in texts[4]
    assert pictures[1].tobytes() != pictures[2].tobytes()  # the prompts differ, so do the pictures


@pytest.mark.slow
def test_different_seeds_negative_prompt_and_start(served) -> None:
    _, client = served
    _, info = _run(client, [True, True, "negative", "space", 4], prompt="a cube", negative_prompt="blur|dark",
                   seed=7)
    assert info["all_negative_prompts"][1:] == ["blur", "dark blur"]
    assert info["all_prompts"] == ["a cube"] * 3
    assert info["all_seeds"][1:] == [7, 8]
    assert "Negative prompt: dark blur\n" in info["infotexts"][2]


@pytest.mark.slow
def test_errors_are_4xx(served) -> None:
    _, client = served
    for args, text in (([False, False, "sideways", "comma", 0], "unknown prompt type"),
                       ([False, False, "positive", "tab", 0], "unknown joining char"),
                       ([False, False, "positive", "comma", -2], "margin"),
                       ([False, False, "positive", "comma", 0, 1], "at most 5")):
        response = client.post("/sdapi/v1/txt2img", json={**SMALL, "prompt": "a|b", "script_name": TITLE,
                                                          "script_args": args})
        assert 400 <= response.status_code < 500 and text in response.text, response.text
