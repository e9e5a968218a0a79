"""The page builds with a fake App, and its real event handlers turn named widgets into requests and back."""

from __future__ import annotations

import json
import threading

import gradio as gr
import pytest
from PIL import Image

from modules.jobs import JobState
from modules.settings import SettingsStore
from modules.types import GenerationRequest
from modules.ui.layout import launch_kwargs
from modules.ui.pnginfo import describe_image
from modules.ui.progress import JobView, interrupt_job, progress_html, skip_job
from modules.ui.settings_tab import problems_html
from modules.ui.toprow import load_checkpoint_updates
from tests.ui.fakes import COLOUR, FakeApp, fake_result
from tests.ui.helpers import Page, merged, run_to_end


@pytest.mark.slow
def test_page_has_tabs_top_row_and_generation_widgets(page: Page) -> None:
    assert isinstance(page.blocks, gr.Blocks)
    for elem_id in ("tab_txt2img", "tab_img2img", "tab_pnginfo", "tab_settings", "setting_sd_model_checkpoint",
                    "setting_sd_vae", "setting_CLIP_stop_at_last_layers", "txt2img_generate", "img2img_generate",
                    "txt2img_prompt", "txt2img_negative_prompt", "txt2img_prompt_token_counter", "txt2img_sampling",
                    "txt2img_scheduler", "txt2img_seed", "txt2img_gallery", "img2maskimg", "img2img_image",
                    "img_inpaint_mask", "pnginfo_image", "settings_submit"):
        page.find(elem_id)
    checkpoint = page.find("setting_sd_model_checkpoint")
    assert checkpoint.value == "tiny.safetensors [0123456789]"
    assert [c[0] for c in page.find("setting_sd_vae").choices] == ["Automatic", "None", "tiny.vae.pt"]
    assert "DPM++ 2M" in [c[0] for c in page.find("txt2img_sampling").choices]
    assert [c[0] for c in page.find("txt2img_styles").choices] == ["film"]


def test_launch_kwargs_are_local(app: FakeApp) -> None:
    kwargs = launch_kwargs(app)
    assert set(kwargs) == {"theme", "css", "js", "head", "max_file_size"} and kwargs["max_file_size"] == "100mb"
    assert "http" not in kwargs["css"] and "googleapis" not in kwargs["js"]
    assert "__TOOLTIPS__" not in kwargs["js"]


@pytest.mark.slow
def test_generate_submits_named_values_and_shows_result(page: Page, app: FakeApp) -> None:
    updates = run_to_end(page.call("txt2img_generate", "click", {
        "txt2img_prompt": "a red square", "txt2img_cfg_scale": 4.5, "txt2img_batch_count": 2,
        "txt2img_width": 64, "txt2img_height": 64, "txt2img_sampling_steps": 3, "txt2img_seed": 5,
    }))
    request = app.generation.requests[-1]
    assert (request.mode, request.prompt, request.cfg_scale, request.n_iter) == ("txt2img", "a red square", 4.5, 2)
    assert (request.width, request.height, request.steps, request.seed) == (64, 64, 3, 5)
    assert request.checkpoint == "tiny.safetensors [0123456789]" and request.vae == "Automatic"
    final = merged(updates)
    gallery = final[page.find("txt2img_gallery")]
    assert len(gallery) == 2 and gallery[0].getpixel((0, 0)) == COLOUR
    assert "parameters" in gallery[0].info  # downloads keep the infotext
    assert "Seed: 5" in final[page.find("html_info_txt2img")]
    assert final[page.find("txt2img_generate")].visible is True


@pytest.mark.slow
def test_user_error_is_shown_as_gradio_error(page: Page) -> None:
    with pytest.raises(gr.Error, match="img2img needs an image"):
        run_to_end(page.call("img2img_generate", "click", {"img2img_prompt": "x"}))


@pytest.mark.slow
def test_failed_job_shows_message_without_traceback(page: Page, app: FakeApp, monkeypatch) -> None:
    def broken_submit(request: GenerationRequest, **kwargs):
        def work(ctx):
            raise RuntimeError("boom")

        return app.jobs.submit(work, owner=kwargs.get("owner"))

    monkeypatch.setattr(app, "submit", broken_submit)
    with pytest.raises(gr.Error) as raised:
        run_to_end(page.call("txt2img_generate", "click", {"txt2img_prompt": "x"}))
    assert raised.value.message == "internal error: RuntimeError: boom"


def test_progress_view_and_queue_position() -> None:
    running = JobView(JobState.RUNNING, 5, 20, 0, 2, 0.125, 12.4, None, "")
    html = progress_html(running)
    assert "12%" in html and "step 5/20" in html and "batch 1/2" in html and "ETA 12s" in html
    queued = JobView(JobState.QUEUED, 0, 0, 0, 1, 0.0, None, 3, "")
    assert "position 3" in progress_html(queued)


def test_interrupt_and_skip_reach_only_the_owner(app: FakeApp) -> None:
    gate = threading.Event()

    def work(ctx):
        gate.wait(5)
        return ctx.cancel.interrupted, ctx.cancel.skipped

    job = app.jobs.submit(work, owner="mine")
    while job.state is JobState.QUEUED:
        threading.Event().wait(0.01)
    interrupt_job(app, job.id, "someone else")
    skip_job(app, job.id, "someone else")
    assert not job.cancel_token.interrupted and not job.cancel_token.skipped
    skip_job(app, job.id, "mine")
    interrupt_job(app, job.id, "mine")
    gate.set()
    job.wait(5)
    assert job.result == (True, True)


@pytest.mark.slow
def test_paste_button_fills_fields_from_prompt_box(page: Page) -> None:
    text = "a lake\nNegative prompt: rain\nSteps: 12, Sampler: Euler a, CFG scale: 3, Seed: 77, Size: 320x256"
    updates = page.call("txt2img_paste", "click", {"txt2img_prompt": text})
    values = {component.elem_id: value for component, value in updates.items()}
    assert values["txt2img_prompt"] == "a lake" and values["txt2img_negative_prompt"] == "rain"
    assert (values["txt2img_sampling_steps"], values["txt2img_sampling"], values["txt2img_cfg_scale"]) == \
        (12, "Euler a", 3.0)
    assert (values["txt2img_seed"], values["txt2img_width"], values["txt2img_height"]) == (77, 320, 256)


@pytest.mark.slow
def test_reuse_seed_takes_the_selected_image(page: Page, app: FakeApp) -> None:
    result = fake_result(GenerationRequest(seed=10, batch_size=3, width=8, height=8))
    panel_result, panel_selected = _panel_states(page, "txt2img")
    fn = page.handler(page.find("txt2img_reuse_seed"), "click")
    assert fn.fn(result, 2) == 12
    assert fn.fn(result, None) == 10
    assert {panel_result, panel_selected} == set(fn.inputs)


def _panel_states(page: Page, tab: str) -> tuple[gr.State, gr.State]:
    fn = page.handler(page.find(f"{tab}_reuse_seed"), "click")
    return fn.inputs[0], fn.inputs[1]


@pytest.mark.slow
def test_send_to_img2img_and_pnginfo(page: Page) -> None:
    result = fake_result(GenerationRequest(prompt="sent", seed=31, steps=9, width=8, height=8, batch_size=2))
    state_result, state_selected = _panel_states(page, "txt2img")
    updates = page.call("txt2img_send_to_img2img", "click", extra={state_result: result, state_selected: 1})
    values = {getattr(c, "elem_id", None) or type(c).__name__: v for c, v in updates.items()}
    assert values["img2img_prompt"] == "sent" and values["img2img_seed"] == 32 and values["img2img_sampling_steps"] == 9
    assert values["img2img_image"].size == (8, 8)
    assert values["tabs"].selected == "img2img"

    updates = page.call("txt2img_send_to_inpaint", "click", extra={state_result: result, state_selected: 0})
    assert updates[page.find("img2maskimg")].size == (8, 8)

    updates = page.call("txt2img_send_to_pnginfo", "click", extra={state_result: result, state_selected: 0})
    values = {getattr(c, "elem_id", None) or type(c).__name__: v for c, v in updates.items()}
    assert "Seed: 31" in values["State"] and values["tabs"].selected == "pnginfo"


@pytest.mark.slow
def test_pnginfo_reads_parameters_and_sends_to_txt2img(page: Page, tmp_path) -> None:
    image = Image.new("RGB", (8, 8))
    image.info["parameters"] = "a tree\nSteps: 7, Sampler: Euler, CFG scale: 2, Seed: 3, Size: 64x64"
    info_html, parameters = describe_image(image)
    assert "a tree" in info_html and parameters.startswith("a tree")
    fn = page.handler(page.find("pnginfo_send_to_txt2img"), "click")
    state = next(c for c in fn.inputs if isinstance(c, gr.State))
    updates = page.call("pnginfo_send_to_txt2img", "click", extra={state: parameters})
    values = {getattr(c, "elem_id", None) or type(c).__name__: v for c, v in updates.items()}
    assert values["txt2img_prompt"] == "a tree" and values["txt2img_sampling_steps"] == 7
    assert values["tabs"].selected == "txt2img"


@pytest.mark.slow
def test_settings_apply_persists_and_reports(page: Page, app: FakeApp) -> None:
    updates = page.call("settings_submit", "click", {"setting_jpeg_quality": 55, "setting_samples_save": False})
    message = updates[page.find("settings_result")]
    assert "2 settings changed" in message
    assert app.settings.get()["jpeg_quality"] == 55
    assert json.loads(app.paths.config_file.read_text())["samples_save"] is False
    assert "Nothing changed" in page.call("settings_submit", "click", {"setting_jpeg_quality": 55,
                                                                        "setting_samples_save": False})[
        page.find("settings_result")]


def test_corrupt_config_is_reported(app: FakeApp, tmp_path) -> None:
    config = tmp_path / "broken" / "config.json"
    config.parent.mkdir()
    config.write_text("{not json", encoding="utf-8")
    app.settings = SettingsStore.open(config)
    html = problems_html(app)
    assert "config.json could not be used" in html and "moved to" in html


def test_checkpoint_change_stores_setting_and_loads_in_background(app: FakeApp) -> None:
    statuses = list(load_checkpoint_updates(app, "other.safetensors", "s1", poll_seconds=0.01))
    assert app.settings.get()["sd_model_checkpoint"] == "other.safetensors"
    assert app.models.loaded == ["other.safetensors"]
    assert "Loaded other.safetensors" in statuses[-1]


def test_job_owner_and_fair_group_of_a_page() -> None:
    from types import SimpleNamespace

    from modules.ui.progress import job_group, job_owner

    anonymous = SimpleNamespace(username=None, session_hash="s1", client=SimpleNamespace(host="10.0.0.7"))
    assert (job_owner(anonymous), job_group(anonymous)) == ("s1", "addr:10.0.0.7")
    logged_in = SimpleNamespace(username="ann", session_hash="s2", client=SimpleNamespace(host="10.0.0.7"))
    assert (job_owner(logged_in), job_group(logged_in)) == ("ann", "user:ann")
    bare = SimpleNamespace(session_hash="s3")  # no address known: the session is its own group
    assert (job_owner(bare), job_group(bare)) == ("s3", "s3")
    assert (job_owner(None), job_group(None)) == (None, None)
