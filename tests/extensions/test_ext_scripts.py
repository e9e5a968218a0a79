"""Scripts: A1111's /sdapi/v1/scripts and script-info shapes, script_args/alwayson_scripts mapping, the Gradio
script area, and the import rule for the extensions shipped in extensions/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
from modules.extensions.loader import ExtensionRoot
from modules.extensions.script_ui import SELECTOR, render_script_area
from modules.extensions.scripts import SCRIPT_KEY, BadScriptArgs, ScriptNotFound
from tests.extensions.helpers import run_with_host, small_request

TOY = '''
from modules.extensions.api import GenerationResult


def ui(builder):
    import gradio as gr
    return {
        "strength": gr.Slider(0, 2, value=0.5, step=0.1, label="Strength"),
        "mode": gr.Dropdown(["soft", "hard"], value="soft", label="Mode"),
        "note": gr.Textbox("", label="Note"),
    }


def run(ctx, request):
    return ctx.generate(request)


def register(ext):
    ext.add_script("Toy Script", ui=ui, run=run, modes=("txt2img",))
    ext.add_script("Toy Always", ui=lambda b: {"flag": __import__("gradio").Checkbox(True, label="Flag")},
                   always_on=True)
'''


@pytest.fixture
def host(write_extension, make_host) -> ExtensionHost:
    folder = write_extension("toy", {"main.py": TOY})
    (folder / "style.css").write_text(".toy { color: red }\n")
    (folder / "javascript").mkdir()
    (folder / "javascript" / "toy.js").write_text("console.log('toy');\n")
    return make_host()


def test_page_assets_are_listed(host):
    assert [path.name for path in host.style_files()] == ["style.css"]
    assert [path.name for path in host.javascript_files()] == ["toy.js"]


def test_scripts_listing_has_a1111_shape(host):
    assert host.scripts.api_scripts() == {"txt2img": ["toy script"], "img2img": []}
    info = host.scripts.api_script_info()
    assert [(i["name"], i["is_alwayson"], i["is_img2img"]) for i in info] == [
        ("toy script", False, False), ("toy always", True, False), ("toy always", True, True)]
    strength = info[0]["args"][0]
    assert {k: strength[k] for k in ("label", "value", "minimum", "maximum", "step", "choices")} == {
        "label": "Strength", "value": 0.5, "minimum": 0, "maximum": 2, "step": 0.1, "choices": None}
    assert info[0]["args"][1]["choices"] == ["soft", "hard"]


def test_request_from_api_positional_and_named(host):
    base = small_request()
    request = host.scripts.request_from_api("TOY SCRIPT", [1.5, "hard"], {"toy always": {"args": [False]}}, base)
    assert request.extension_args["toy"] == {"strength": 1.5, "mode": "hard", "note": "", "flag": False}
    assert request.extension_args[SCRIPT_KEY] == {"title": "Toy Script"}
    assert host.scripts.selected_script(request).title == "Toy Script"
    named = host.scripts.request_from_api(None, [], {"toy": {"args": {"flag": False}}}, base)
    assert named.extension_args == {"toy": {"flag": False}}
    assert host.scripts.selected_script(named) is None


@pytest.mark.slow
def test_request_from_api_errors(host):
    base = small_request()
    with pytest.raises(ScriptNotFound, match="'nope' not found for txt2img; available scripts: 'Toy Script'"):
        host.scripts.request_from_api("nope", [], None, base)
    with pytest.raises(ScriptNotFound):  # a txt2img-only script is not offered in img2img
        host.scripts.request_from_api("toy script", [], None, small_request(mode="img2img"))
    with pytest.raises(ScriptNotFound, match="Always-on script 'ghost'"):
        host.scripts.request_from_api(None, [], {"ghost": {"args": []}}, base)
    with pytest.raises(BadScriptArgs, match="at most 3 argument"):
        host.scripts.request_from_api("toy script", [1, 2, 3, 4], None, base)
    with pytest.raises(BadScriptArgs, match="no argument"):
        host.scripts.request_from_api(None, [], {"toy always": {"args": {"bogus": 1}}}, base)
    with pytest.raises(BadScriptArgs, match='"args"'):
        host.scripts.request_from_api(None, [], {"toy always": [True]}, base)


@pytest.mark.slow
def test_script_area_renders_and_applies_values(host):
    with gr.Blocks():
        area = render_script_area(host.scripts, "txt2img")
    assert list(area.inputs) == ["toy/flag", SELECTOR, "toy/strength", "toy/mode", "toy/note"]
    values = {"toy/flag": True, SELECTOR: "Toy Script", "toy/strength": 2.0, "toy/mode": "soft", "toy/note": "n"}
    request = area.apply(small_request(), values)
    assert request.extension_args == {"toy": {"flag": True, "strength": 2.0, "mode": "soft", "note": "n"},
                                      SCRIPT_KEY: {"title": "Toy Script"}}
    plain = area.apply(small_request(), {**values, SELECTOR: "None"})
    assert plain.extension_args == {"toy": {"flag": True}}


COMBINED = '''
from modules.extensions.api import Combined, UserError


def combine(values):
    if values["size"] < 0:
        raise UserError("size must not be negative")
    if values["size"] == 13:
        raise RuntimeError("unlucky")
    return [values["label"]] * int(values["size"])


def ui(builder):
    import gradio as gr
    controls = {"label": gr.Textbox("x", label="Label"), "size": gr.Number(2, label="Size")}
    return {"level": gr.Slider(0, 1, value=0.5, label="Level"),
            "items": Combined(controls, combine, value=[], label="Items"),
            "data_dir": gr.Textbox(str(builder.data_dir), label="Data")}


def register(ext):
    ext.add_script("Combo", ui=ui, always_on=True)
'''


@pytest.mark.slow
def test_a_combined_value_is_built_from_its_controls(write_extension, make_host, tmp_path):
    from modules.errors import UserError

    write_extension("combo", {"main.py": COMBINED})
    host = make_host()
    with gr.Blocks():
        area = render_script_area(host.scripts, "txt2img")
    assert list(area.inputs) == ["combo/level", "combo/items/label", "combo/items/size", "combo/data_dir"]
    assert area.inputs["combo/data_dir"].value == str(tmp_path)  # UiBuilder.data_dir is the host's
    values = {"combo/level": 0.2, "combo/items/label": "a", "combo/items/size": 3, "combo/data_dir": "d"}
    request = area.apply(small_request(), values)
    assert request.extension_args == {"combo": {"level": 0.2, "items": ["a", "a", "a"], "data_dir": "d"}}
    with pytest.raises(UserError, match="size must not be negative"):
        area.apply(small_request(), {**values, "combo/items/size": -1})
    with pytest.raises(UserError, match="could not read its controls: RuntimeError: unlucky"):
        area.apply(small_request(), {**values, "combo/items/size": 13})
    assert "unlucky" in host.get("combo").errors[-1].message
    # to the API the combined value is one argument, with its default
    entry = host.scripts.find_always_on("combo", "txt2img")
    assert [(arg.name, arg.label, arg.value) for arg in host.scripts.arg_info(entry, "txt2img")] == [
        ("level", "Level", 0.5), ("items", "Items", []), ("data_dir", "Data", str(tmp_path))]
    api = host.scripts.request_from_api(None, [], {"combo": {"args": [0.7, ["b"]]}}, small_request())
    assert api.extension_args["combo"] == {"level": 0.7, "items": ["b"], "data_dir": str(tmp_path)}


def test_builtin_extensions_load_cleanly():
    host = ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)])
    host.load()
    rows = {row.name: row for row in host.list_extensions()}
    assert {"xyz_grid", "cfg_rescale"} <= set(rows)
    assert all(row.state == "loaded" and not row.errors for row in rows.values())
    assert host.scripts.api_scripts()["txt2img"] == ["prompt matrix", "prompts from file or textbox",
                                                       "x/y/z plot"]
    with gr.Blocks():
        render_script_area(host.scripts, "img2img")
    assert all(not record.errors for record in host.records)


def _modules_imported(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_extensions_import_only_the_api():
    """Extension code may import `modules.extensions.api` and nothing else of `modules`."""
    files = sorted(BUILTIN_ROOT.rglob("*.py"))
    assert files, "no extension code found"
    offenders = [f"{path.relative_to(BUILTIN_ROOT)}: {name}" for path in files for name in _modules_imported(path)
                 if (name == "modules" or name.startswith("modules.")) and name != "modules.extensions.api"]
    assert not offenders, offenders


def _readme_examples() -> dict[str, str]:
    """Code blocks of extensions/README.md marked `<!-- example: <relative path> -->`."""
    text = (BUILTIN_ROOT / "README.md").read_text()
    found = re.findall(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```", text, flags=re.S)
    return dict(found)


@pytest.mark.slow
def test_readme_example_works(tmp_path, make_host, ext_root):
    files = _readme_examples()
    assert set(files) == {"metadata.ini", "scripts/brighten.py", "scripts/scale_mid.py"}
    for relative, source in files.items():
        if relative == "scripts/scale_mid.py":  # the model hook's example, an extension of its own (below)
            continue
        target = ext_root / "brighten" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source)
    host = make_host()
    assert host.get("brighten").loaded and not host.get("brighten").errors
    request = host.scripts.request_from_api(None, [], {"brighten": {"args": [0.5]}}, small_request())
    brighter = run_with_host(host, request)
    plain = run_with_host(ExtensionHost(), small_request())
    assert np.asarray(brighter.images[0]).mean() > np.asarray(plain.images[0]).mean()
    assert brighter.infotexts[0].endswith("Brighten: 0.5")
    fastapi_app = FastAPI()
    host.hooks.app_started(fastapi_app)
    assert TestClient(fastapi_app).get("/brighten/v1/ping").json() == {"ok": True}


def test_readme_model_hook_example_works(write_extension, make_host):
    write_extension("scale_mid", {"scale_mid.py": _readme_examples()["scripts/scale_mid.py"]}, "Api = 1.1\n")
    host = make_host()
    plain = run_with_host(ExtensionHost(), small_request())
    assert run_with_host(host, small_request()).images[0].tobytes() == plain.images[0].tobytes()
    scaled = run_with_host(host, small_request(extension_args={"scale_mid": {"factor": 1.5}}))
    assert scaled.images[0].tobytes() != plain.images[0].tobytes()
    assert run_with_host(ExtensionHost(), small_request()).images[0].tobytes() == plain.images[0].tobytes()
    assert not host.get("scale_mid").errors
