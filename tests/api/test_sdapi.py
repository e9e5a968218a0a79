"""/sdapi/v1 over real HTTP against the App with a stand-in generation (see conftest): request conversion, response
shapes, listings, options, errors, progress/interrupt/skip and auth."""

from __future__ import annotations

import base64
import io
import json
import threading
from pathlib import Path

import httpx
import pytest
from PIL import Image, PngImagePlugin

from tests.api.api_helpers import seed_colour, write_safetensors

SMALL = {"width": 64, "height": 64, "steps": 2}


def b64_png(image: Image.Image, infotext: str | None = None) -> str:
    info = None
    if infotext:
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", infotext)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def decode(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


def test_txt2img_response_has_images_info_and_echoed_parameters(make_server) -> None:
    _, client = make_server()
    body = {"prompt": "a cat", "seed": 5, "batch_size": 2, "sampler_name": "k_euler_a", "unknown_field": 1, **SMALL}
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    info = json.loads(data["info"])
    assert info["seed"] == 5 and info["all_seeds"] == [5, 6]
    assert info["sampler_name"] == "Euler a" and info["sd_model_name"] == "alpha"
    assert len(info["infotexts"]) == 2 and "Seed: 6" in info["infotexts"][1]
    assert len(info["job_timestamp"]) == 14 and info["all_prompts"] == ["a cat", "a cat"]
    images = [decode(text) for text in data["images"]]
    assert [image.size for image in images] == [(64, 64), (64, 64)]
    assert [image.getpixel((0, 0)) for image in images] == [seed_colour(5), seed_colour(6)]
    assert images[1].info["parameters"] == info["infotexts"][1]
    params = data["parameters"]
    assert params["prompt"] == "a cat" and params["steps"] == 2 and params["sampler_index"] == "Euler"
    assert "unknown_field" not in params and params["enable_hr"] is False


def test_txt2img_defaults_and_send_images_false(make_server) -> None:
    _, client = make_server()
    response = client.post("/sdapi/v1/txt2img", json={"send_images": False, "steps": 1, "width": None})
    assert response.status_code == 200, response.text
    data = response.json()
    info = json.loads(data["info"])
    assert data["images"] == [] and info["width"] == 512 and info["sampler_name"] == "Euler"
    assert data["parameters"]["steps"] == 1 and data["parameters"]["cfg_scale"] == 7.0


def test_img2img_inpaint_uses_a1111_api_defaults(make_server) -> None:
    _, client = make_server()
    init = "data:image/png;base64," + b64_png(Image.new("RGB", (64, 64), "blue"))
    mask = b64_png(Image.new("L", (32, 32), 255))  # another size: resized to the init image
    body = {"prompt": "p", "seed": 1, "init_images": [init], "mask": mask, **SMALL}
    response = client.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    info = json.loads(data["info"])
    assert info["denoising_strength"] == 0.75
    extra = info["extra_generation_params"]
    assert extra["Mask blur"] == "4" and extra["Masked content"] == "fill" and extra["Inpaint area"] == "Only masked"
    assert data["parameters"]["init_images"] is None and data["parameters"]["mask"] is None


def test_img2img_without_mask_is_img2img_and_can_echo_init_images(make_server) -> None:
    _, client = make_server()
    init = b64_png(Image.new("RGB", (64, 64), "red"))
    body = {"init_images": [init], "denoising_strength": 0.5, "include_init_images": True, "resize_mode": 1, **SMALL}
    response = client.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    info = json.loads(data["info"])
    assert info["denoising_strength"] == 0.5 and "Mask blur" not in info["extra_generation_params"]
    assert data["parameters"]["init_images"] == [init]


def test_infotext_settings_become_overrides_unless_override_settings_names_them(make_server) -> None:
    app, client = make_server()
    text = "x\nSteps: 2, Sampler: Euler a, CFG scale: 5, Seed: 77, Size: 64x64, ENSD: 31337, RNG: NV"
    assert client.post("/sdapi/v1/txt2img", json={"infotext": text}).status_code == 200
    assert app.generation.last_request.overrides == {"randn_source": "NV", "eta_noise_seed_delta": 31337}
    body = {"infotext": text, "override_settings": {"randn_source": "CPU"}}
    assert client.post("/sdapi/v1/txt2img", json=body).status_code == 200
    assert app.generation.last_request.overrides == {"randn_source": "CPU", "eta_noise_seed_delta": 31337}


def test_s_min_uncond_is_the_jobs_negative_guidance_minimum_sigma(make_server) -> None:
    app, client = make_server()
    assert client.post("/sdapi/v1/txt2img", json={"s_min_uncond": 1.5}).status_code == 200
    assert app.generation.last_request.overrides == {"s_min_uncond": 1.5}
    text = "x\nSteps: 2, Sampler: Euler, CFG scale: 5, Seed: 77, Size: 64x64, NGMS: 2, NGMS all steps: True"
    assert client.post("/sdapi/v1/txt2img", json={"infotext": text}).status_code == 200
    assert app.generation.last_request.overrides == {"s_min_uncond": 2.0, "s_min_uncond_all": True}
    assert client.post("/sdapi/v1/txt2img", json={"s_min_uncond": 99}).status_code == 422


def test_infotext_fills_fields_the_body_leaves_out(make_server) -> None:
    _, client = make_server()
    text = "from infotext\nSteps: 3, Sampler: DDIM, CFG scale: 5, Seed: 77, Size: 64x128"
    response = client.post("/sdapi/v1/txt2img", json={"infotext": text, "seed": 9})
    info = json.loads(response.json()["info"])
    assert (info["prompt"], info["steps"], info["sampler_name"], info["cfg_scale"]) == ("from infotext", 3, "DDIM", 5)
    assert (info["seed"], info["width"], info["height"]) == (9, 64, 128)


@pytest.mark.parametrize(("path", "body", "status", "error"), [
    ("txt2img", {"sampler_name": "no such sampler"}, 400, "UnknownSampler"),
    ("txt2img", {"sampler_name": "PLMS", "scheduler": "Karras"}, 400, "UnknownSampler"),
    ("txt2img", {"scheduler": "wobbly"}, 400, "UnknownSampler"),
    ("txt2img", {"override_settings": {"sd_model_checkpoint": "missing"}}, 404, "ModelNotFound"),
    ("txt2img", {"override_settings": {"no_such_option": 1}}, 422, "InvalidRequest"),
    ("txt2img", {"override_settings": {"sd_vae": "missing.pt"}}, 404, "ModelNotFound"),
    ("txt2img", {"override_settings": {"CLIP_stop_at_last_layers": 99}}, 422, "InvalidRequest"),
    ("txt2img", {"steps": 0}, 422, "InvalidRequest"),
    ("txt2img", {"steps": "many"}, 422, "RequestValidationError"),
    ("txt2img", {"enable_hr": True, "hr_upscaler": "4x_foolhardy_Remacri"}, 422, "InvalidRequest"),
    ("txt2img", {"enable_hr": True, "hr_sampler_name": "DPM++ 4M"}, 400, "UnknownSampler"),
    ("txt2img", {"enable_hr": True, "hr_checkpoint_name": "gamma"}, 404, "ModelNotFound"),
    ("txt2img", {"firstphase_width": 256}, 422, "InvalidRequest"),
    ("txt2img", {"alwayson_scripts": {"controlnet": {"args": []}}}, 422, "ScriptNotFound"),
    ("txt2img", {"script_name": "no such script", "script_args": []}, 422, "ScriptNotFound"),
    ("img2img", {}, 422, "InvalidRequest"),
    ("img2img", {"init_images": ["***not base64***"]}, 400, "InvalidImage"),
    ("img2img", {"init_images": [base64.b64encode(b"just text").decode()]}, 400, "InvalidImage"),
    ("img2img", {"init_images": ["http://example.com/a.png"]}, 400, "InvalidImage"),
    ("img2img", {"init_images": [b64_png(Image.new("RGB", (8, 8)))], "inpainting_fill": 7}, 422, "InvalidRequest"),
])
@pytest.mark.slow
def test_bad_requests_get_a1111_error_bodies(make_server, path: str, body: dict, status: int, error: str) -> None:
    _, client = make_server()
    response = client.post(f"/sdapi/v1/{path}", json={**SMALL, **body})
    assert response.status_code == status, response.text
    data = response.json()
    assert data["error"] == error and set(data) == {"error", "detail", "body", "errors"}
    assert data["detail"]


def test_a_fault_is_a_500_with_the_a1111_error_body(make_server) -> None:
    _, client = make_server()
    response = client.post("/sdapi/v1/txt2img", json={"prompt": "explode", **SMALL})
    assert response.status_code == 500
    assert response.json()["error"] == "RuntimeError" and "fault inside" in response.json()["detail"]
    assert client.post("/sdapi/v1/txt2img", json=SMALL).status_code == 200  # the queue carries on


def test_null_values_mean_defaults(make_server) -> None:
    _, client = make_server()
    body = {"prompt": None, "steps": None, "sampler_name": None, "override_settings": {"sd_model_checkpoint": None},
            "width": 64, "height": 64, "batch_size": None}
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert (info["steps"], info["sampler_name"], info["sd_model_name"], info["prompt"]) == (50, "Euler", "alpha", "")


def test_duplicate_force_task_id_is_refused(make_server) -> None:
    _, client = make_server()
    assert client.post("/sdapi/v1/txt2img", json={"force_task_id": "t1", **SMALL}).status_code == 200
    again = client.post("/sdapi/v1/txt2img", json={"force_task_id": "t1", **SMALL})
    assert again.status_code == 422 and "t1" in again.json()["detail"]


@pytest.mark.slow
def test_options_switch_checkpoint_between_requests(make_server) -> None:
    app, client = make_server()
    options = client.get("/sdapi/v1/options").json()
    assert options["sd_model_checkpoint"] is None and options["samples_format"] == "png"
    first = json.loads(client.post("/sdapi/v1/txt2img", json=SMALL).json()["info"])
    assert app.models.checkpoints.keys() == []  # the stand-in generation loads nothing
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "beta"}).status_code == 200
    assert [record.name for record in app.models.checkpoints.keys()] == ["beta.safetensors"]  # loaded by the POST
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "beta.safetensors"
    second = json.loads(client.post("/sdapi/v1/txt2img", json=SMALL).json()["info"])
    override = {"override_settings": {"sd_model_checkpoint": "alpha.safetensors"}, **SMALL}
    third = json.loads(client.post("/sdapi/v1/txt2img", json=override).json()["info"])
    assert (first["sd_model_name"], second["sd_model_name"], third["sd_model_name"]) == ("alpha", "beta", "alpha")
    assert app.settings.get()["sd_model_checkpoint"] == "beta.safetensors"  # the override stayed per job
    assert json.loads(app.paths.config_file.read_text())["sd_model_checkpoint"] == "beta.safetensors"


@pytest.mark.slow
def test_options_are_validated_before_anything_is_applied(make_server) -> None:
    app, client = make_server()
    missing = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "gamma", "jpeg_quality": 50})
    assert missing.status_code == 404 and missing.json()["error"] == "ModelNotFound"
    assert missing.json()["detail"].startswith("model 'gamma' not found. Available: alpha.safetensors")
    bad_switch = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "beta", "jpeg_quality": 1000})
    assert bad_switch.status_code == 422 and app.models.checkpoints.keys() == []  # checked before loading
    unknown = client.post("/sdapi/v1/options", json={"jpeg_quality": 50, "made_up": True})
    assert unknown.status_code == 422 and "made_up" in unknown.json()["detail"]
    bad = client.post("/sdapi/v1/options", json={"jpeg_quality": 1000})
    assert bad.status_code == 422
    assert app.settings.get()["jpeg_quality"] == 80
    assert client.post("/sdapi/v1/options", json={"jpeg_quality": 50}).json() is None
    assert client.get("/sdapi/v1/options").json()["jpeg_quality"] == 50


@pytest.mark.slow
def test_checkpoint_switch_waits_for_the_queue_and_a_failed_load_changes_nothing(make_server) -> None:
    app, client = make_server()
    app.generation.gate.close()
    held, held_out = _post_in_thread(client, "/sdapi/v1/txt2img", {"seed": 1, **SMALL})
    assert app.generation.gate.reached.wait(10)
    switch, switch_out = _post_in_thread(client, "/sdapi/v1/options", {"sd_model_checkpoint": "beta"})
    switch.join(0.5)
    assert switch.is_alive() and app.settings.get()["sd_model_checkpoint"] is None  # queued behind the job
    app.generation.gate.release()
    held.join(10)
    switch.join(10)
    assert switch_out[0].status_code == 200 and switch_out[0].json() is None
    assert json.loads(held_out[0].json()["info"])["sd_model_name"] == "alpha"  # the job queued before: old model
    assert app.settings.get()["sd_model_checkpoint"] == "beta.safetensors"
    write_safetensors(app.paths.models / "Stable-diffusion" / "broken.safetensors", {"x": [1]})
    failed = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "broken", "jpeg_quality": 55})
    assert failed.status_code == 400 and failed.json()["error"] == "CorruptFile"
    assert "broken.safetensors: not a readable checkpoint" in failed.json()["detail"]
    options = client.get("/sdapi/v1/options").json()
    assert (options["sd_model_checkpoint"], options["jpeg_quality"]) == ("beta.safetensors", 80)
    unchanged = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "beta", "jpeg_quality": 60})
    assert unchanged.status_code == 200 and client.get("/sdapi/v1/options").json()["jpeg_quality"] == 60


@pytest.mark.slow
def test_model_and_sampler_listings(make_server) -> None:
    app, client = make_server()
    write_safetensors(app.paths.vae / "soft.vae.safetensors", {"x": [1]})
    assert client.post("/sdapi/v1/refresh-vae").status_code == 200
    models = client.get("/sdapi/v1/sd-models").json()
    assert [m["title"] for m in models] == ["alpha.safetensors", "beta.safetensors"]
    assert set(models[0]) == {"title", "model_name", "hash", "sha256", "filename", "config"}
    assert models[0]["model_name"] == "alpha" and Path(models[0]["filename"]).is_file()
    assert client.get("/sdapi/v1/sd-vae").json() == [
        {"model_name": "soft.vae.safetensors", "filename": str(app.paths.vae / "soft.vae.safetensors")}]
    samplers = {s["name"]: s for s in client.get("/sdapi/v1/samplers").json()}
    assert samplers["DPM++ 2M"]["options"]["scheduler"] == "karras" and "k_dpmpp_2m" in samplers["DPM++ 2M"]["aliases"]
    assert samplers["Euler a"]["options"] == {"uses_ensd": True} and "DDIM CFG++" in samplers
    assert samplers["DPM++ 2S a"]["options"] == {"scheduler": "karras", "uses_ensd": True, "second_order": True}
    assert samplers["DPM fast"]["options"] == {"uses_ensd": True} and len(samplers) == 20
    assert samplers["DPM2 a"]["options"] == {"scheduler": "karras", "discard_next_to_last_sigma": True,
                                             "uses_ensd": True, "second_order": True}  # A1111 1.10's options
    assert samplers["DPM++ 3M SDE"]["options"] == {"scheduler": "exponential", "discard_next_to_last_sigma": True,
                                                   "brownian_noise": True}
    assert samplers["DPM++ 2M SDE Heun"]["options"] == {"scheduler": "exponential", "brownian_noise": True,
                                                        "solver_type": "heun"}
    schedulers = client.get("/sdapi/v1/schedulers").json()
    assert schedulers[0]["name"] == "automatic"
    karras = next(s for s in schedulers if s["label"] == "Karras")
    assert karras == {"name": "karras", "label": "Karras", "aliases": None, "default_rho": 7.0,
                      "need_inner_model": False}
    labels = {s["label"] for s in schedulers}
    assert "Align Your Steps" in labels and "Linear Quadratic" not in labels
    assert client.get("/sdapi/v1/upscalers").json() == [
        {"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4.0}
        for name in ("None", "Lanczos", "Nearest")]
    assert client.get("/sdapi/v1/latent-upscale-modes").json() == [{"name": name} for name in (
        "Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)", "Latent (nearest)",
        "Latent (nearest-exact)")]


def test_refresh_checkpoints_finds_new_files(make_server) -> None:
    app, client = make_server()
    write_safetensors(app.paths.checkpoints / "sub" / "gamma.safetensors", {"x": [1]})
    assert len(client.get("/sdapi/v1/sd-models").json()) == 2
    assert client.post("/sdapi/v1/refresh-checkpoints").status_code == 200
    titles = [m["title"] for m in client.get("/sdapi/v1/sd-models").json()]
    assert "sub/gamma.safetensors" in titles
    assert client.post("/sdapi/v1/unload-checkpoint").json() == {}


def test_embeddings_loras_flags_and_memory(make_server) -> None:
    app, client = make_server()
    write_safetensors(app.paths.embeddings / "style.safetensors", {"emb_params": [2, 768]})
    (app.paths.embeddings / "old.pt").write_bytes(b"not opened")
    write_safetensors(app.paths.lora / "detail.safetensors", {"w": [1]},
                      {"ss_output_name": "detail_v2", "ss_tag_frequency": '{"a": {"b": 1}}'})
    embeddings = client.get("/sdapi/v1/embeddings").json()
    assert embeddings["loaded"] == {}
    assert embeddings["skipped"]["style"]["vectors"] == 2 and embeddings["skipped"]["style"]["shape"] == 768
    assert "old" not in embeddings["skipped"]  # an unreadable file is logged, not listed (A1111)
    loras = client.get("/sdapi/v1/loras").json()
    assert loras == [{"name": "detail", "alias": "detail_v2", "path": str(app.paths.lora / "detail.safetensors"),
                      "metadata": {"ss_output_name": "detail_v2", "ss_tag_frequency": {"a": {"b": 1}}}}]
    flags = client.get("/sdapi/v1/cmd-flags").json()
    assert flags["api"] is True and flags["nowebui"] is False and flags["xformers"] is False
    assert flags["data_dir"] == str(app.paths.data_dir) and flags["loglevel"] == "INFO"
    memory = client.get("/sdapi/v1/memory").json()
    assert memory["ram"]["total"] > 0 and "error" in memory["cuda"]


def test_png_info_reads_and_parses_the_infotext(make_server) -> None:
    _, client = make_server()
    text = "a dog\nNegative prompt: blurry\nSteps: 4, Sampler: Euler, CFG scale: 6, Seed: 3, Size: 64x96"
    response = client.post("/sdapi/v1/png-info", json={"image": b64_png(Image.new("RGB", (4, 4)), text)})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["info"] == text
    params = data["parameters"]
    assert params["Prompt"] == "a dog" and params["Negative prompt"] == "blurry" and params["Steps"] == "4"
    assert params["Size-1"] == "64" and params["Clip skip"] == "1"
    empty = client.post("/sdapi/v1/png-info", json={"image": b64_png(Image.new("RGB", (4, 4)))}).json()
    assert empty["info"] == "" and empty["parameters"]["Prompt"] == ""
    assert client.post("/sdapi/v1/png-info", json={"image": "@@"}).status_code == 400


def _post_in_thread(client: httpx.Client, path: str, body: dict) -> tuple[threading.Thread, list[httpx.Response]]:
    out: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: out.append(client.post(path, json=body)))
    thread.start()
    return thread, out


def test_progress_and_interrupt_act_on_the_running_job(make_server) -> None:
    app, client = make_server()
    idle = client.get("/sdapi/v1/progress").json()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0 and idle["current_image"] is None
    app.generation.gate.close()
    thread, out = _post_in_thread(client, "/sdapi/v1/txt2img", {"seed": 3, "n_iter": 2, **SMALL, "steps": 4})
    assert app.generation.gate.reached.wait(10)
    running = client.get("/sdapi/v1/progress").json()
    assert running["progress"] == pytest.approx(1 / 8) and running["textinfo"] == "step 1"
    assert running["state"]["sampling_step"] == 1 and running["state"]["sampling_steps"] == 4
    assert running["state"]["job_count"] == 2 and decode(running["current_image"]).size == (8, 8)
    assert client.get("/sdapi/v1/progress", params={"skip_current_image": True}).json()["current_image"] is None
    assert client.post("/sdapi/v1/interrupt").json() == {}
    thread.join(10)
    info = json.loads(out[0].json()["info"])
    assert out[0].status_code == 200 and info["interrupted"] is True and len(out[0].json()["images"]) == 1


def test_skip_marks_the_running_job(make_server) -> None:
    app, client = make_server()
    app.generation.gate.close()
    thread, out = _post_in_thread(client, "/sdapi/v1/txt2img", SMALL)
    assert app.generation.gate.reached.wait(10)
    assert client.post("/sdapi/v1/skip").status_code == 200
    assert client.get("/sdapi/v1/progress").json()["state"]["skipped"] is True
    thread.join(10)
    assert out[0].status_code == 200


@pytest.mark.slow
def test_concurrent_requests_each_get_their_own_images(make_server) -> None:
    _, client = make_server()
    seeds = [100 + i for i in range(8)]
    results: dict[int, httpx.Response] = {}
    threads = [threading.Thread(target=lambda s=s: results.__setitem__(s, client.post(
        "/sdapi/v1/txt2img", json={"seed": s, "prompt": f"p{s}", **SMALL}))) for s in seeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for seed in seeds:
        data = results[seed].json()
        info = json.loads(data["info"])
        assert info["seed"] == seed and info["prompt"] == f"p{seed}"
        assert decode(data["images"][0]).getpixel((0, 0)) == seed_colour(seed)


@pytest.mark.slow
def test_basic_auth_protects_every_api_route(make_server) -> None:
    _, client = make_server(api_auth=(("alice", "s3cret"), ("bob", "pa:ss")))
    denied = client.get("/sdapi/v1/sd-models")
    assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Basic"
    assert denied.json()["error"] == "HTTPException"
    assert client.get("/sdapi/v1/sd-models", auth=("alice", "wrong")).status_code == 401
    assert client.post("/sdapi/v1/txt2img", json=SMALL, auth=("mallory", "s3cret")).status_code == 401
    assert client.get("/api/v1/jobs").status_code == 401
    assert client.get("/sdapi/v1/sd-models", auth=("alice", "s3cret")).status_code == 200
    assert client.post("/sdapi/v1/txt2img", json=SMALL, auth=("bob", "pa:ss")).status_code == 200
    flags = client.get("/sdapi/v1/cmd-flags", auth=("bob", "pa:ss")).json()
    assert flags["api_auth"] == "alice:***,bob:***"
    assert client.get("/docs").status_code == 200
    assert "/sdapi/v1/txt2img" in client.get("/openapi.json").json()["paths"]


def test_auth_off_needs_no_login(make_server) -> None:
    _, client = make_server()
    assert client.get("/sdapi/v1/sd-models").status_code == 200
    assert client.get("/sdapi/v1/cmd-flags").json()["api_auth"] is None


def test_prompt_styles_lists_the_styles_file(make_server, tmp_path) -> None:
    data = tmp_path / "data0"  # the data folder make_server gives its first app
    data.mkdir()
    (data / "styles.csv").write_text('name,prompt,negative_prompt\nfilm,"{prompt}, film grain",blurry\nbare,sharp,\n',
                                     encoding="utf-8")
    _, client = make_server()
    assert client.get("/sdapi/v1/prompt-styles").json() == [
        {"name": "film", "prompt": "{prompt}, film grain", "negative_prompt": "blurry"},
        {"name": "bare", "prompt": "sharp", "negative_prompt": ""},
    ]
