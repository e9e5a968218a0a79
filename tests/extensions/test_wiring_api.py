"""Extensions over real HTTP on the server webui.py builds (`build_server`: API + UI, then APP_STARTED): A1111's
/sdapi/v1/scripts and script-info, script_name/script_args and alwayson_scripts in txt2img and img2img, a route an
extension adds at start-up, with the real App and a tiny SD1 checkpoint (64 px, 1-2 steps)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import textwrap
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from modules.app import App
from modules.bootstrap import build_app
from modules.cli import LaunchOptions
from modules.models.convert import save_single_file
from modules.models.identity import Family, ModelIdentity
from modules.models.tiny import build_tiny_components
from tests.api.api_helpers import LiveServer

SMALL = {"prompt": "a cube", "width": 64, "height": 64, "steps": 2, "sampler_name": "Euler", "cfg_scale": 7,
         "seed": 11}
PINGER = '''
from modules.extensions.api import Hook


def register(ext):
    ext.on(Hook.APP_STARTED, lambda ctx: ctx.fastapi.add_api_route("/pinger/v1/ping", lambda: {"pong": ext.name},
                                                                    methods=["GET"]))
'''


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, httpx.Client]]:
    import webui

    data = tmp_path_factory.mktemp("wiring_api")
    folder = data / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    save_single_file(build_tiny_components(ModelIdentity(Family.SD1), seed=0), folder / "tiny.safetensors")
    (data / "extensions" / "pinger" / "scripts").mkdir(parents=True)
    (data / "extensions" / "pinger" / "scripts" / "main.py").write_text(textwrap.dedent(PINGER))
    _commit_folder(data / "extensions" / "pinger")
    launch = LaunchOptions(data_dir=data, api=True)
    app = build_app(launch)
    server = LiveServer(webui.build_server(app, launch)).start()
    client = httpx.Client(base_url=server.url, timeout=120)
    yield app, client
    client.close()
    server.stop()
    app.close()


def _commit_folder(folder: Path) -> None:
    """Make `folder` a git checkout with one commit on branch "main", as an installed extension is."""
    git = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "first"]):
        subprocess.run(git + args, check=True, capture_output=True)


def _decode(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


def _txt2img(client: httpx.Client, **fields: object) -> tuple[list[Image.Image], dict]:
    response = client.post("/sdapi/v1/txt2img", json={**SMALL, **fields})
    assert response.status_code == 200, response.text
    data = response.json()
    return [_decode(text) for text in data["images"]], json.loads(data["info"])


@pytest.mark.slow
def test_scripts_lists_xyz_for_both_tabs(served) -> None:
    _, client = served
    response = client.get("/sdapi/v1/scripts")
    assert response.status_code == 200
    assert response.json() == {"txt2img": ["prompt matrix", "prompts from file or textbox", "x/y/z plot"],
                               "img2img": ["loopback", "outpainting mk2", "poor man's outpainting", "prompt matrix",
                                           "prompts from file or textbox", "sd upscale", "x/y/z plot"]}


@pytest.mark.slow
def test_script_info_shape(served) -> None:
    _, client = served
    info = client.get("/sdapi/v1/script-info").json()
    rows = {(row["name"], row["is_img2img"]): row for row in info}
    assert set(rows) == {("x/y/z plot", False), ("x/y/z plot", True), ("cfg rescale", False), ("cfg rescale", True),
                         ("sd upscale", True), ("prompts from file or textbox", False),
                         ("prompts from file or textbox", True), ("prompt matrix", False), ("prompt matrix", True),
                         ("loopback", True), ("poor man's outpainting", True),
                         ("outpainting mk2", True), ("controlnet", False), ("controlnet", True)}
    prompts_args = rows[("prompts from file or textbox", False)]["args"]
    assert [arg["name"] for arg in prompts_args] == ["checkbox_iterate", "checkbox_iterate_batch", "prompt_position",
                                                     "prompt_txt"]
    assert rows[("cfg rescale", False)]["is_alwayson"] is True and rows[("x/y/z plot", True)]["is_alwayson"] is False
    phi = rows[("cfg rescale", False)]["args"][0]
    assert phi == {"name": "phi", "label": "CFG Rescale phi (0 = off)", "value": 0.0, "minimum": 0.0,
                   "maximum": 1.0, "step": 0.05, "choices": None}
    xyz_args = rows[("x/y/z plot", False)]["args"]
    assert [arg["name"] for arg in xyz_args[:4]] == ["x_type", "x_values", "x_values_dropdown", "y_type"]
    assert len(xyz_args) == 18 and xyz_args[-1]["name"] == "csv_mode"
    assert "Hires upscaler" in xyz_args[0]["choices"] and "Denoising" in xyz_args[0]["choices"]
    assert "Hires steps" not in rows[("x/y/z plot", True)]["args"][0]["choices"]
    upscale_args = rows[("sd upscale", True)]["args"]
    assert [arg["name"] for arg in upscale_args] == ["info", "overlap", "upscaler_index", "scale_factor"]
    assert [arg["value"] for arg in upscale_args[1:]] == [64, "None", 2.0]
    assert upscale_args[2]["choices"] == ["None", "Lanczos", "Nearest"]


@pytest.mark.slow
def test_txt2img_with_xyz_plot_returns_grid_and_images(served) -> None:
    _, client = served
    images, info = _txt2img(client, script_name="x/y/z plot", script_args=["Seed", "1, 2", "Steps", "1, 2"])
    assert len(images) == 1 + 4
    grid, cells = images[0], images[1:]
    assert grid.width > 2 * 64 and grid.height > 2 * 64
    assert all(cell.size == (64, 64) for cell in cells)
    assert "X Type: Seed" in info["infotexts"][0] and "Y Type: Steps" in info["infotexts"][0]
    assert sorted(info["all_seeds"][1:]) == [1, 1, 2, 2]


@pytest.mark.slow
def test_txt2img_with_a1111s_full_xyz_argument_list(served) -> None:
    """What an A1111 1.10 client posts: 18 positional values, axis types as A1111 indexes (9 = Sampler, 1 = Seed),
    the sampler values in the dropdown slot, "Vary seeds for X" on, no sub images."""
    _, client = served
    args = [9, "", ["Euler", "Euler a"], 1, "5, 9", [], 0, "", [],
            True, False, False, False, True, False, False, 2, False]
    images, info = _txt2img(client, script_name="x/y/z plot", script_args=args)
    assert len(images) == 1 and images[0].width > 2 * 64 + 2 and images[0].height > 2 * 64 + 2
    assert 'X Type: Sampler, X Values: "Euler,Euler a", Y Type: Seed, Y Values: "5, 9"' in info["infotexts"][0]
    with_cells, info = _txt2img(client, script_name="x/y/z plot", script_args=args[:10] + [True] + args[11:])
    assert len(with_cells) == 1 + 4 and info["all_seeds"][1:] == [5, 6, 9, 10]
    assert ["Sampler: Euler a," in text for text in info["infotexts"][1:]] == [False, True, False, True]


@pytest.mark.slow
def test_alwayson_cfg_rescale_changes_the_image(served) -> None:
    _, client = served
    plain, plain_info = _txt2img(client)
    rescaled, info = _txt2img(client, alwayson_scripts={"cfg rescale": {"args": [0.7]}})
    assert info["infotexts"][0].endswith("CFG Rescale phi: 0.7")
    assert "CFG Rescale" not in plain_info["infotexts"][0]
    assert not np.array_equal(np.asarray(plain[0]), np.asarray(rescaled[0]))
    named, _ = _txt2img(client, alwayson_scripts={"cfg_rescale": {"args": {"phi": 0.7}}})
    assert np.array_equal(np.asarray(named[0]), np.asarray(rescaled[0]))


@pytest.mark.slow
def test_img2img_takes_scripts_too(served) -> None:
    _, client = served
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 30, 200)).save(buffer, format="PNG")
    body = {**SMALL, "init_images": [base64.b64encode(buffer.getvalue()).decode()], "denoising_strength": 0.6,
            "script_name": "X/Y/Z plot", "script_args": ["Denoising", "0.5, 0.8"],
            "alwayson_scripts": {"CFG Rescale": {"args": [0.5]}}}
    response = client.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert len(response.json()["images"]) == 1 + 2
    assert all(text.endswith("CFG Rescale phi: 0.5") for text in info["infotexts"][1:])


@pytest.mark.parametrize(("body", "detail"), [
    ({"script_name": "no such script"}, "Script 'no such script' not found"),
    ({"alwayson_scripts": {"adetailer": {"args": []}}}, "Always-on script 'adetailer' not found"),
    ({"script_name": "x/y/z plot", "script_args": list(range(30))}, "takes at most 18 positional arguments"),
    ({"script_name": "x/y/z plot", "script_args": [8]}, "axis type 8 ('Prompt order') is not available"),
    ({"alwayson_scripts": {"cfg rescale": [0.7]}}, "must be an object with \"args\""),
])
def test_bad_scripts_are_a1111_422s(served, body: dict, detail: str) -> None:
    _, client = served
    response = client.post("/sdapi/v1/txt2img", json={**SMALL, **body})
    assert response.status_code == 422, response.text
    data = response.json()
    assert set(data) == {"error", "detail", "body", "errors"} and detail in data["detail"]


def test_extension_route_added_at_start_is_reachable(served) -> None:
    _, client = served
    assert client.get("/pinger/v1/ping").json() == {"pong": "pinger"}
    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()  # the UI mount still serves the page
    assert client.get("/sdapi/v1/scripts").status_code == 200


def test_extensions_are_listed_by_the_app(served) -> None:
    app, _ = served
    states = {row.name: row.state for row in app.extensions.list_extensions()}
    assert states == {"cfg_rescale": "loaded", "controlnet": "loaded", "loopback": "loaded",
                      "outpainting": "loaded",
                      "prompt_matrix": "loaded", "prompts_from_file": "loaded", "sd_upscale": "loaded",
                      "xyz_grid": "loaded",
                      "pinger": "loaded"}


def test_extensions_listing_has_a1111_shape(served: tuple[App, httpx.Client]) -> None:
    _, client = served
    rows = {row["name"]: row for row in client.get("/sdapi/v1/extensions").json()}
    assert {"pinger", "xyz_grid", "cfg_rescale"} <= set(rows)
    pinger = rows["pinger"]
    assert set(pinger) == {"name", "remote", "branch", "commit_hash", "version", "commit_date", "enabled"}
    assert pinger["branch"] == "main" and len(pinger["commit_hash"]) == 40 and pinger["commit_date"] > 0
    assert pinger["version"] == pinger["commit_hash"][:8] and pinger["enabled"] is True
    builtin = rows["xyz_grid"]
    assert builtin["remote"] == builtin["commit_hash"] == builtin["branch"] == "" and builtin["commit_date"] == 0
