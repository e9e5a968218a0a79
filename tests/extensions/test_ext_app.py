"""The host inside the real App (bootstrap + processing): built-in and user extensions around real jobs on a tiny
single-file checkpoint: model-loaded and image-saved hooks, X/Y/Z plot grids saved, CFG rescale in infotexts."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from modules import images
from modules.app import App
from modules.bootstrap import build_app
from modules.cli import LaunchOptions
from modules.types import GenerationRequest
from tests.core.helpers import write_tiny_checkpoint

WATCHER = '''
from modules.extensions.api import Hook
from tests.extensions import ext_test_events


def register(ext):
    ext.on(Hook.MODEL_LOADED, lambda ctx: ext_test_events.EVENTS.append(("loaded", f"{ctx.title} {ctx.family}")))
    ext.on(Hook.IMAGE_SAVED, lambda ctx: ext_test_events.EVENTS.append(("saved", ctx.path.name)))
'''


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    data = tmp_path_factory.mktemp("ext_app")
    write_tiny_checkpoint(data)
    (data / "extensions" / "watcher" / "scripts").mkdir(parents=True)
    (data / "extensions" / "watcher" / "scripts" / "main.py").write_text(textwrap.dedent(WATCHER))
    app = build_app(LaunchOptions(data_dir=data))
    yield app
    app.close()


def _request(app: App, **fields: object) -> GenerationRequest:
    base = GenerationRequest(prompt="a cube", seed=5, steps=1, width=64, height=64, sampler="Euler", cfg_scale=4)
    request = app.extensions.scripts.request_from_api(*fields.pop("scripts", (None, [], None)), base)
    return request.with_changes(**fields)


@pytest.mark.slow
def test_hooks_and_scripts_around_real_jobs(app, clear_events):
    names = {row.name: row.state for row in app.extensions.list_extensions()}
    assert names == {"cfg_rescale": "loaded", "controlnet": "loaded", "loopback": "loaded", "outpainting": "loaded",
                     "prompt_matrix": "loaded", "prompts_from_file": "loaded", "sd_upscale": "loaded",
                     "xyz_grid": "loaded",
                     "watcher": "loaded"}

    plain = app.submit(_request(app, scripts=(None, [], {"cfg rescale": {"args": {"phi": 0.5}}}))).outcome(120)
    assert plain.infotexts[0].endswith("CFG Rescale phi: 0.5")
    saved = [what for kind, what in clear_events if kind == "saved"]
    assert clear_events[0][0] == "loaded" and clear_events[0][1].startswith("tiny.safetensors [")
    assert clear_events[0][1].endswith(" sd1") and len(saved) == 1
    stored = next((app.paths.outputs / "txt2img-images").rglob(saved[0]))
    assert images.read_infotext_file(stored) == plain.infotexts[0]

    xyz = ("X/Y/Z plot", ["Seed", "1, 2", "Steps", "1,2"], {"cfg_rescale": {"args": [0.5]}})
    result = app.submit(_request(app, scripts=xyz)).outcome(120)
    assert len(result.images) == 1 + 4 and result.images[0].width > 128
    assert all(text.endswith("CFG Rescale phi: 0.5") for text in result.infotexts[1:])
    grids = list((app.paths.outputs / "txt2img-grids").rglob("*.png"))
    assert len(grids) == 1 and "X Type: Seed" in (images.read_infotext_file(grids[0]) or "")
    assert grids[0].name == "grid-0000.png"  # A1111's grid names
    assert len([kind for kind, _ in clear_events if kind == "saved"]) == 1 + 4
    assert [kind for kind, _ in clear_events].count("loaded") == 1  # the checkpoint stayed cached


def test_unknown_script_is_a_user_error(app):
    from modules.errors import UserError

    request = GenerationRequest(prompt="x", extension_args={"_script": {"title": "No Such Script"}})
    with pytest.raises(UserError, match="No Such Script"):
        app.submit(request).outcome(60)


def test_extension_paths_are_under_the_data_dir(app):
    user_root = [root.path for root in app.extensions.roots if not root.builtin]
    assert user_root == [Path(app.paths.extensions)]
