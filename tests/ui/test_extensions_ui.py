"""Extensions in the page: the Script area of txt2img/img2img feeding `extension_args`, extension tabs and page
assets, the Extensions tab (list, enable/disable, install refused), and warnings for extension errors in a job."""

from __future__ import annotations

import textwrap
from pathlib import Path

import gradio as gr
import pytest

from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
from modules.extensions.loader import ExtensionRoot
from modules.extensions.scripts import SCRIPT_KEY
from modules.ui.extensions_tab import errors_between, install_extension
from modules.ui.layout import build_ui, launch_kwargs
from modules.ui.tokens import TokenCounter
from tests.ui.fakes import FakeApp, fake_result
from tests.ui.helpers import Page, merged, run_to_end

pytestmark = pytest.mark.slow  # each test builds the whole page

TOY = '''
from modules.extensions.api import Hook, UiTab


def build():
    import gradio as gr
    gr.Markdown("toy tab body", elem_id="toy_tab_body")


def register(ext):
    ext.on(Hook.UI_TABS, lambda ctx: UiTab(build, "Toy", "toy_tab"))
    ext.on(Hook.UI_TABS, lambda ctx: UiTab(build, "Clash", "settings"))
'''


def _host(app: FakeApp, tmp_path: Path, *, installs_allowed: bool) -> ExtensionHost:
    user = tmp_path / "user_extensions"
    folder = user / "toy"
    (folder / "scripts").mkdir(parents=True)
    (folder / "scripts" / "main.py").write_text(textwrap.dedent(TOY))
    (folder / "style.css").write_text(".toy-style { color: red }\n")
    (folder / "javascript").mkdir()
    (folder / "javascript" / "toy.js").write_text("window.toyLoaded = '</script>';\n")
    host = ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True), ExtensionRoot(user)], settings=app.settings,
                         installs_allowed=installs_allowed, data_dir=tmp_path, install_dir=user)
    host.load()
    return host


@pytest.fixture
def ext_page(app: FakeApp, tmp_path: Path, token_counter: TokenCounter) -> Page:
    app.extensions = _host(app, tmp_path, installs_allowed=False)
    return Page(build_ui(app, tokens=token_counter))


def _choices(component: gr.components.Component) -> list[str]:
    return [choice[0] for choice in component.choices]


def test_script_area_in_both_generation_tabs(ext_page: Page) -> None:
    for mode, scripts in (("txt2img", ["Prompt matrix", "Prompts from file or textbox", "X/Y/Z plot"]),
                          ("img2img", ["Loopback", "Outpainting mk2", "Poor man's outpainting", "Prompt matrix",
                                       "Prompts from file or textbox", "SD upscale", "X/Y/Z plot"])):
        select = ext_page.find(f"{mode}_script_select")
        assert _choices(select) == ["None", *scripts] and select.value == "None"
        ext_page.find(f"{mode}_script_cfg_rescale")  # the always-on accordion
        ext_page.find(f"script_{mode}_cfg_rescale_phi")
        ext_page.find(f"script_{mode}_xyz_grid_x_values")


def test_script_values_reach_the_request_by_name(ext_page: Page, app: FakeApp) -> None:
    run_to_end(ext_page.call("txt2img_generate", "click", {"txt2img_prompt": "plain"}))
    plain = app.generation.requests[-1].extension_args
    assert plain == {"cfg_rescale": {"phi": 0.0}, "controlnet": {"units": []}}  # always-on values always sent

    run_to_end(ext_page.call("txt2img_generate", "click", {
        "txt2img_prompt": "plot", "txt2img_script_select": "X/Y/Z plot", "script_txt2img_cfg_rescale_phi": 0.7,
        "script_txt2img_xyz_grid_x_type": "Steps", "script_txt2img_xyz_grid_x_values": "1,2",
    }))
    args = app.generation.requests[-1].extension_args
    assert args[SCRIPT_KEY] == {"title": "X/Y/Z plot"} and args["cfg_rescale"] == {"phi": 0.7}
    assert args["xyz_grid"]["x_type"] == "Steps" and args["xyz_grid"]["x_values"] == "1,2"
    assert args["xyz_grid"]["draw_legend"] is True and set(args) == {SCRIPT_KEY, "cfg_rescale", "controlnet",
                                                                                "xyz_grid"}


def test_img2img_script_values_reach_the_request(ext_page: Page, app: FakeApp) -> None:
    from PIL import Image

    run_to_end(ext_page.call("img2img_generate", "click", {
        "img2img_prompt": "x", "img2img_image": Image.new("RGB", (64, 64)), "img2img_script_select": "X/Y/Z plot",
        "script_img2img_xyz_grid_x_type": "Denoising", "script_img2img_xyz_grid_x_values": "0.3, 0.6",
    }))
    request = app.generation.requests[-1]
    assert request.mode == "img2img" and request.extension_args[SCRIPT_KEY] == {"title": "X/Y/Z plot"}
    assert request.extension_args["xyz_grid"]["x_type"] == "Denoising"


def test_sd_upscale_controls_reach_the_img2img_request(ext_page: Page, app: FakeApp) -> None:
    from PIL import Image

    for name in ("overlap", "upscaler_index", "scale_factor"):
        ext_page.find(f"script_img2img_sd_upscale_{name}")
    run_to_end(ext_page.call("img2img_generate", "click", {
        "img2img_prompt": "x", "img2img_image": Image.new("RGB", (64, 64)), "img2img_script_select": "SD upscale",
        "script_img2img_sd_upscale_overlap": 32, "script_img2img_sd_upscale_scale_factor": 1.5,
    }))
    request = app.generation.requests[-1]
    assert request.extension_args[SCRIPT_KEY] == {"title": "SD upscale"}
    args = request.extension_args["sd_upscale"]
    assert (args["overlap"], args["upscaler_index"], args["scale_factor"]) == (32, "None", 1.5)


def test_extension_tabs_are_added_with_unique_ids(ext_page: Page) -> None:
    ext_page.find("tab_toy_tab")
    ext_page.find("tab_settings_2")  # an extension tab asking for a taken id gets another one
    ext_page.find("tab_settings")
    ext_page.find("toy_tab_body")


def test_extension_assets_go_into_the_page(app: FakeApp, tmp_path: Path) -> None:
    app.extensions = _host(app, tmp_path, installs_allowed=False)
    kwargs = launch_kwargs(app)
    assert ".toy-style { color: red }" in kwargs["css"] and kwargs["css"].index(".toy-style") > 0
    assert "window.toyLoaded = '<\\/script>';" in kwargs["head"] and kwargs["head"].startswith("<script")
    assert kwargs["head"].count("</script>") == 1


def test_extensions_tab_lists_builtins_and_stores_enabled(ext_page: Page, app: FakeApp) -> None:
    table = ext_page.find("extensions_table").value
    for name in ("xyz_grid", "cfg_rescale", "sd_upscale", "toy"):
        assert f"extension_row_{name}" in table
    assert "built-in" in table
    enabled = ext_page.find("extensions_enabled")
    builtins = ["cfg_rescale", "controlnet", "loopback", "outpainting", "prompt_matrix",
                "prompts_from_file", "sd_upscale", "toy", "xyz_grid"]
    assert sorted(_choices(enabled)) == builtins
    assert sorted(enabled.value) == builtins

    keep = ["xyz_grid", "loopback", "outpainting", "prompt_matrix",
            "prompts_from_file", "sd_upscale", "toy"]  # the two always-on ones off
    status, table, update = ext_page.call("extensions_apply", "click", {"extensions_enabled": keep})
    assert "cfg_rescale disabled" in status and "Restart" in status
    assert sorted(app.settings.get()["disabled_extensions"]) == ["cfg_rescale", "controlnet"]
    assert "loaded (disabled: restart to unload)" in table and sorted(update.value) == sorted(keep)
    assert app.extensions.scripts.entries("txt2img", always_on=True) == []  # hooks stop at once
    status, _, _ = ext_page.call("extensions_apply", "click", {"extensions_enabled": keep})
    assert "Nothing changed" in status


def test_extension_errors_are_listed(ext_page: Page, app: FakeApp) -> None:
    record = app.extensions.get("toy")
    record.record_error("hook POST_CFG", ValueError("bad <tensor>"))
    table, _ = ext_page.call("extensions_refresh", "click")
    assert "error in hook POST_CFG: ValueError: bad &lt;tensor&gt;" in table


def test_install_is_refused_when_not_allowed(ext_page: Page, app: FakeApp, tmp_path: Path) -> None:
    assert ext_page.find("extensions_install_button").interactive is False
    assert "--enable-insecure-extension-access" in ext_page.find("extensions_install_refused").value
    message = install_extension(app.extensions, "https://example.invalid/sd-webui-thing.git", None)
    assert "--enable-insecure-extension-access" in message
    assert not (tmp_path / "user_extensions" / "sd-webui-thing").exists()


def test_install_form_is_enabled_when_allowed(app: FakeApp, tmp_path: Path, token_counter: TokenCounter) -> None:
    app.extensions = _host(app, tmp_path, installs_allowed=True)
    page = Page(build_ui(app, tokens=token_counter))
    assert page.find("extensions_install_button").interactive is True
    with pytest.raises(KeyError):
        page.find("extensions_install_refused")
    assert "Enter the git URL" in install_extension(app.extensions, "  ", None)


def test_generation_warns_about_extension_errors(ext_page: Page, app: FakeApp, monkeypatch) -> None:
    record = app.extensions.get("toy")
    record.record_error("hook POST_CFG", ValueError("before the job"))  # not this job's: no warning

    def submit(request, **kwargs):
        def work(ctx):
            record.record_error("hook AFTER_IMAGE", ValueError("broken"))
            record.record_error("hook AFTER_IMAGE", ValueError("broken again"))
            return fake_result(request)

        return app.jobs.submit(work, owner=kwargs.get("owner"))

    monkeypatch.setattr(app, "submit", submit)
    with pytest.warns(UserWarning) as caught:
        updates = run_to_end(ext_page.call("txt2img_generate", "click", {"txt2img_prompt": "x"}))
    messages = [str(warning.message) for warning in caught]
    assert any("Extension toy: error in hook AFTER_IMAGE (2 times): ValueError: broken again" in m for m in messages)
    assert not any("before the job" in m for m in messages)
    assert len(merged(updates)[ext_page.find("txt2img_gallery")]) == 1  # the job's result is shown all the same
    assert errors_between(app.extensions, 0, float("inf"))[0].startswith("Extension toy: error in hook POST_CFG")


def test_selecting_a_script_shows_its_controls(ext_page: Page) -> None:
    shown = ext_page.call("txt2img_script_select", "change", {"txt2img_script_select": "X/Y/Z plot"})
    hidden = ext_page.call("txt2img_script_select", "change", {"txt2img_script_select": "None"})
    # one answer per selectable script's group, in the dropdown's order (Prompt matrix, Prompts from file, X/Y/Z)
    assert [update["visible"] for update in shown.values()] == [False, False, True]
    assert [update["visible"] for update in hidden.values()] == [False, False, False]
