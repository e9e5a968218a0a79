"""Prompts from file or textbox (built-in extension) over real HTTP on a tiny model, as A1111 API clients call it
(`script_name` and A1111's positional `script_args`): one generation per line, line options, seeds that iterate or
stay, the tab's prompt joined at the start or end, errors naming the line; and the line parser itself."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterator

import httpx
import pytest

from modules.app import App
from modules.bootstrap import build_app
from modules.cli import LaunchOptions
from modules.errors import UserError
from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
from modules.extensions.loader import ExtensionRoot
from tests.api.api_helpers import serving
from tests.core.helpers import write_tiny_checkpoint

TITLE = "Prompts from file or textbox"
SMALL = {"width": 64, "height": 64, "steps": 2, "sampler_name": "Euler", "cfg_scale": 5}


@pytest.fixture(scope="module")
def script() -> Any:
    host = ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)])
    host.load()
    return sys.modules["sdwebui_extensions.prompts_from_file.scripts.prompts_from_file"]


def test_lines_are_prompts_or_a1111_options(script: Any) -> None:
    assert script.parse_line("a red cube", 1) == {"prompt": "a red cube"}
    parsed = script.parse_line('--prompt "a cat, sitting" --steps 3 --cfg_scale 4.5 --sampler_name "Euler a" '
                               "--styles one two --seed 7 --do_not_save_samples true", 2)
    assert parsed == {"prompt": "a cat, sitting", "steps": 3, "cfg_scale": 4.5, "sampler": "Euler a",
                      "styles": ("one", "two"), "seed": 7, "do_not_save_samples": True}
    for line, message in (("--wobble 3", "unknown option --wobble"), ("--steps many", "--steps 'many'"),
                          ("--restore_faces true", "face restoration"), ("--outpath_samples /tmp", "output folder"),
                          ('--prompt "open', "line 5")):
        with pytest.raises(UserError, match=message):
            script.parse_line(line, 5)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, httpx.Client]]:
    data = tmp_path_factory.mktemp("prompts_from_file")
    write_tiny_checkpoint(data)
    app = build_app(LaunchOptions(data_dir=data, api=True))
    with serving(app, timeout=300) as client:
        yield app, client


def _run(client: httpx.Client, args: list[Any], **fields: Any) -> dict:
    body = {**SMALL, "script_name": TITLE, "script_args": args, **fields}
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    return json.loads(response.json()["info"])


@pytest.mark.slow
def test_one_generation_per_line_with_its_options(served) -> None:
    _, client = served
    listed = client.get("/sdapi/v1/scripts").json()["txt2img"]
    assert TITLE.lower() in listed
    info = _run(client, [True, False, "start", "a red cube\n\n--prompt \"a blue ball\" --steps 3 --batch_size 2\n"],
                prompt="studio light", seed=100)
    texts = info["infotexts"]
    assert len(texts) == 3
    assert texts[0].startswith("a red cube studio light\n") and "Seed: 100," in texts[0]
    # iterate: the second line starts at 100 + 1 x 1; its batch of 2 takes 101 and 102
    assert texts[1].startswith("a blue ball studio light\n") and "Seed: 101," in texts[1] and "Steps: 3," in texts[1]
    assert "Seed: 102," in texts[2]


@pytest.mark.slow
def test_same_seed_for_all_lines_and_prompts_at_the_end(served) -> None:
    _, client = served
    info = _run(client, [False, False, "end", "a red cube\na blue ball"], prompt="photo of", seed=55)
    texts = info["infotexts"]
    assert [text.split("\n")[0] for text in texts] == ["photo of a red cube", "photo of a blue ball"]
    assert all("Seed: 55," in text for text in texts)


@pytest.mark.slow
def test_a_line_with_tiling_makes_a_tileable_picture(served) -> None:
    _, client = served
    info = _run(client, [False, False, "start", "--prompt plain\n--prompt tiles --tiling true"], seed=9)
    plain, tiled = info["infotexts"]
    assert "Tiling" not in plain and "Tiling: True" in tiled


@pytest.mark.slow
def test_errors_are_4xx(served) -> None:
    _, client = served
    for args, text in (([False, False, "start", ""], "the list is empty"),
                       ([False, False, "start", "--bogus 1"], "unknown option --bogus")):
        response = client.post("/sdapi/v1/txt2img", json={**SMALL, "script_name": TITLE, "script_args": args})
        assert 400 <= response.status_code < 500 and text in response.text
