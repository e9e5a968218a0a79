"""The API over real HTTP on the real App (`bootstrap.build_app`) with two tiny SD1 checkpoints: the whole path from
JSON to the generation core and back. 64x64 images, 2-3 steps."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from PIL import Image

from modules.app import App
from modules.bootstrap import build_app
from modules.cli import LaunchOptions
from modules.models.convert import save_single_file
from modules.models.identity import Family, ModelIdentity
from modules.models.tiny import build_tiny_components
from tests.api.api_helpers import serving

pytestmark = pytest.mark.slow  # the real App on tiny checkpoints

SMALL = {"width": 64, "height": 64, "steps": 2, "sampler_name": "Euler", "cfg_scale": 5}


def b64_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


def make_real_app(data_dir: Path, api_auth: tuple[tuple[str, str], ...] = ()) -> App:
    folder = data_dir / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    for seed, name in enumerate(("tiny-a.safetensors", "tiny-b.safetensors")):
        save_single_file(build_tiny_components(ModelIdentity(Family.SD1), seed=seed), folder / name)
    return build_app(LaunchOptions(data_dir=data_dir, api=True, api_auth=api_auth))


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, httpx.Client]]:
    app = make_real_app(tmp_path_factory.mktemp("real_api"))
    with serving(app) as client:
        yield app, client


def txt2img(client: httpx.Client, **fields: object) -> tuple[list[Image.Image], dict]:
    response = client.post("/sdapi/v1/txt2img", json={**SMALL, **fields})
    assert response.status_code == 200, response.text
    data = response.json()
    return [decode(text) for text in data["images"]], json.loads(data["info"])


@pytest.mark.slow
def test_txt2img_through_the_core(real) -> None:
    _, client = real
    images, info = txt2img(client, prompt="red square", seed=42, batch_size=2, steps=3)
    assert [image.size for image in images] == [(64, 64), (64, 64)]
    assert info["all_seeds"] == [42, 43] and info["sd_model_name"] == "tiny-a"
    assert len(info["sd_model_hash"]) == 10 and info["version"]
    assert info["sampler_name"] == "Euler" and info["steps"] == 3
    assert set(info["timings"]) >= {"encode_prompts", "denoise", "decode", "total"}  # an addition to A1111's info
    assert "Seed: 43" in images[1].info["parameters"] and images[1].info["parameters"] == info["infotexts"][1]
    assert images[0].tobytes() != images[1].tobytes()
    png_info = client.post("/sdapi/v1/png-info", json={"image": b64_png_with_info(images[0])}).json()
    assert png_info["parameters"]["Seed"] == "42" and png_info["parameters"]["Prompt"] == "red square"


@pytest.mark.slow
def test_txt2img_with_hires_fix(real) -> None:
    _, client = real
    images, info = txt2img(client, prompt="red square", seed=7, enable_hr=True, hr_upscaler="lanczos",
                           hr_second_pass_steps=3, hr_prompt="blue square", denoising_strength=0.5)
    assert [image.size for image in images] == [(128, 128)]
    assert (info["width"], info["height"], info["denoising_strength"]) == (64, 64, 0.5)  # A1111: first-pass size
    text = info["infotexts"][0]
    assert "Size: 64x64" in text and "Denoising strength: 0.5" in text
    assert "Hires prompt: blue square, Hires upscale: 2, Hires steps: 3, Hires upscaler: Lanczos" in text
    again, _ = txt2img(client, infotext=text)  # the infotext alone asks for the same picture
    assert again[0].size == (128, 128) and again[0].tobytes() == images[0].tobytes()
    plain, _ = txt2img(client, infotext=text, enable_hr=False)
    assert plain[0].size == (64, 64)


@pytest.mark.slow
def test_hires_checkpoint_runs_the_second_pass_on_another_checkpoint(real) -> None:
    app, client = real
    fields = {"prompt": "red square", "seed": 11, "enable_hr": True, "hr_upscaler": "Lanczos",
              "denoising_strength": 0.6}
    same, _ = txt2img(client, **fields, hr_checkpoint_name="Use same checkpoint")
    other, info = txt2img(client, **fields, hr_checkpoint_name="tiny-b")
    assert other[0].size == (128, 128) and other[0].tobytes() != same[0].tobytes()
    short_title = f"tiny-b [{app.models.catalog.find('tiny-b.safetensors').shorthash}]"
    assert info["sd_model_name"] == "tiny-a"  # A1111 reports the first pass's model
    assert f"Hires checkpoint: {short_title}, Hires upscale: 2" in info["infotexts"][0]
    again, _ = txt2img(client, infotext=info["infotexts"][0])  # pasted back: the same picture
    assert again[0].tobytes() == other[0].tobytes()
    missing = client.post("/sdapi/v1/txt2img", json={**SMALL, **fields, "hr_checkpoint_name": "nowhere"})
    assert missing.status_code == 404 and "nowhere" in missing.text


@pytest.mark.slow
def test_firstpass_image_runs_only_the_second_pass(real) -> None:
    _, client = real
    fields = {"prompt": "red square", "seed": 21, "hr_upscaler": "Lanczos", "denoising_strength": 0.5}
    first, _ = txt2img(client, **fields)
    whole, _ = txt2img(client, **fields, enable_hr=True)
    upscaled, info = txt2img(client, **fields, enable_hr=True, firstpass_image=b64_png(first[0]))
    assert upscaled[0].size == (128, 128) and upscaled[0].tobytes() == whole[0].tobytes()
    assert "Hires upscaler: Lanczos" in info["infotexts"][0]
    bad = client.post("/sdapi/v1/txt2img", json={**SMALL, **fields, "enable_hr": True, "firstpass_image": "xyz"})
    assert bad.status_code == 400 and "firstpass_image" in bad.text


@pytest.mark.slow
def test_hires_fix_saves_the_picture_before_the_second_pass_when_asked(real) -> None:
    app, client = real
    txt2img(client, seed=424242, enable_hr=True, save_images=True,
            override_settings={"save_images_before_highres_fix": True})
    saved = sorted(path.name for path in app.paths.outputs.rglob("*424242*"))
    before, final = saved  # A1111 saves the first pass first: its number is the lower one
    assert before.endswith("-424242-before-highres-fix.png") and final.endswith("-424242.png")
    assert int(before[:5]) + 1 == int(final[:5])
    sizes = sorted(Image.open(path).size for path in app.paths.outputs.rglob("*424242*"))
    assert sizes == [(64, 64), (128, 128)]


@pytest.mark.slow
def test_file_and_folder_name_patterns_text_files_and_the_grid(real) -> None:
    """A1111's Saving settings, set where the user sets them (Settings tab / config.json), act on the files; a
    batch saved through the API comes with its grid in front, as A1111's."""
    import datetime

    app, client = real
    changes = {"samples_filename_pattern": "[seed]-[model_name]-[batch_number]", "save_txt": True,
               "directories_filename_pattern": "[date]/[prompt_words]", "directories_max_prompt_words": 2}
    before = {key: app.settings.get()[key] for key in changes}
    app.settings.update(changes, persist=False)
    try:
        pictures, info = txt2img(client, prompt="zebra stripes, everywhere", seed=5550, batch_size=2,
                                 save_images=True)
    finally:
        app.settings.update(before, persist=False)
    today = datetime.date.today().isoformat()
    folder = app.paths.outputs / "txt2img-images" / today / "zebra stripes"
    names = sorted(path.name for path in folder.iterdir())
    assert names == ["00000-5550-tiny-a-1.png", "00000-5550-tiny-a-1.txt", "00001-5551-tiny-a-2.png",
                     "00001-5551-tiny-a-2.txt"]
    assert len(pictures) == 3 and info["index_of_first_image"] == 1 and info["all_seeds"] == [5550, 5551]
    assert len(info["infotexts"]) == 3 and info["infotexts"][0] == info["infotexts"][1]  # the grid's is the first's
    grid, *samples = pictures
    assert grid.size == (128, 64)  # two 64x64 pictures side by side: round(sqrt(2)) = 1 row
    assert grid.crop((0, 0, 64, 64)).tobytes() == samples[0].tobytes()
    assert grid.crop((64, 0, 128, 64)).tobytes() == samples[1].tobytes()
    for index, stem in enumerate(("00000-5550-tiny-a-1", "00001-5551-tiny-a-2")):
        assert (folder / f"{stem}.txt").read_text(encoding="utf-8") == info["infotexts"][index + 1]
        with Image.open(folder / f"{stem}.png") as saved:
            assert saved.tobytes() == samples[index].tobytes()
            assert saved.info["parameters"] == info["infotexts"][index + 1]
    grids = app.paths.outputs / "txt2img-grids" / today / "zebra stripes"
    assert sorted(path.name for path in grids.iterdir()) == ["grid-0000.png", "grid-0000.txt"]
    with Image.open(grids / "grid-0000.png") as saved_grid:
        assert saved_grid.tobytes() == grid.tobytes() and saved_grid.info["parameters"] == info["infotexts"][0]


@pytest.mark.slow
def test_tiling_as_a1111s_api_field_and_infotext(real) -> None:
    _, client = real
    plain, plain_info = txt2img(client, prompt="tiles", seed=31)
    tiled, info = txt2img(client, prompt="tiles", seed=31, tiling=True)
    assert "Tiling: True" in info["infotexts"][0] and "Tiling" not in plain_info["infotexts"][0]
    assert tiled[0].tobytes() != plain[0].tobytes()
    again, _ = txt2img(client, prompt="tiles", seed=31, override_settings={"tiling": True})
    assert again[0].tobytes() == tiled[0].tobytes()  # the field is the setting for this job, as in A1111
    response = client.post("/sdapi/v1/png-info", json={"image": b64_png_with_info(tiled[0])})
    assert response.status_code == 200 and response.json()["parameters"]["Tiling"] == "True"


@pytest.mark.slow
def test_grid_settings(real) -> None:
    app, client = real
    plain, info = txt2img(client, prompt="no grid through the API unless saving", seed=7770, batch_size=2)
    assert len(plain) == 2 and info["index_of_first_image"] == 0
    before = {key: app.settings.get()[key] for key in ("return_grid", "grid_only_if_multiple", "n_rows")}
    try:
        app.settings.update({"return_grid": False}, persist=False)
        saved_only, _ = txt2img(client, prompt="grid saved not shown", seed=7771, batch_size=2, save_images=True)
        assert len(saved_only) == 2
        assert [path.name for path in app.paths.outputs.rglob("grid-*.png")
                if "grid saved not shown" in Image.open(path).info["parameters"]] != []
        app.settings.update({"return_grid": True, "grid_only_if_multiple": False, "n_rows": 2}, persist=False)
        single, info = txt2img(client, prompt="a grid of one", seed=7772, save_images=True)
        assert len(single) == 2 and info["index_of_first_image"] == 1 and single[0].tobytes() == single[1].tobytes()
        two_rows, _ = txt2img(client, prompt="two rows", seed=7773, batch_size=2, save_images=True)
        assert two_rows[0].size == (64, 128)
    finally:
        app.settings.update(before, persist=False)


def b64_png_with_info(image: Image.Image) -> str:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", image.info["parameters"])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def _poll_progress(client: httpx.Client, stop: threading.Event, seen: list[dict]) -> None:
    while not stop.is_set():
        response = client.get("/sdapi/v1/progress")
        assert response.status_code == 200
        seen.append(response.json())
        time.sleep(0.02)


@pytest.mark.slow
def test_eight_concurrent_requests_while_progress_is_polled(real) -> None:
    _, client = real
    seeds = [1000 + 17 * i for i in range(8)]
    results: dict[int, httpx.Response] = {}
    polls: list[dict] = []
    stop = threading.Event()
    poller = threading.Thread(target=_poll_progress, args=(client, stop, polls))
    poller.start()
    workers = [threading.Thread(target=lambda s=s: results.__setitem__(s, client.post(
        "/sdapi/v1/txt2img", json={**SMALL, "seed": s, "prompt": f"prompt {s}"}))) for s in seeds]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    stop.set()
    poller.join(10)
    pixels = set()
    for seed in seeds:
        assert results[seed].status_code == 200, results[seed].text
        data = results[seed].json()
        info = json.loads(data["info"])
        assert info["seed"] == seed and info["prompt"] == f"prompt {seed}"
        assert f"Seed: {seed}," in info["infotexts"][0]
        image = decode(data["images"][0])
        assert image.size == (64, 64) and f"Seed: {seed}," in image.info["parameters"]
        pixels.add(image.tobytes())
    assert len(pixels) == len(seeds)
    assert all(0 <= poll["progress"] <= 1 for poll in polls)
    assert any(poll["state"]["job_count"] > 0 for poll in polls)
    again, _ = txt2img(client, seed=seeds[0], prompt=f"prompt {seeds[0]}")
    assert again[0].tobytes() == decode(results[seeds[0]].json()["images"][0]).tobytes()


@pytest.mark.slow
def test_checkpoint_switch_through_options(real) -> None:
    app, client = real
    before, info_a = txt2img(client, seed=7)
    assert [record.name for record in app.models.checkpoints.keys()] == ["tiny-a.safetensors"]
    response = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-b"})
    assert response.status_code == 200 and response.json() is None
    try:
        # loaded during the POST, as in A1111 (the cache keeps one checkpoint by default)
        assert [record.name for record in app.models.checkpoints.keys()] == ["tiny-b.safetensors"]
        assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("tiny-b.safetensors")
        after, info_b = txt2img(client, seed=7)
        assert (info_a["sd_model_name"], info_b["sd_model_name"]) == ("tiny-a", "tiny-b")
        assert before[0].tobytes() != after[0].tobytes()
        override = {"override_settings": {"sd_model_checkpoint": "tiny-a"}}
        _, info_override = txt2img(client, seed=7, **override)
        assert info_override["sd_model_name"] == "tiny-a"
    finally:
        client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-a"})
    assert [record.name for record in app.models.checkpoints.keys()] == ["tiny-a.safetensors"]
    missing = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-c"})
    assert missing.status_code == 404 and "model 'tiny-c' not found" in missing.json()["detail"]
    titles = [model["title"] for model in client.get("/sdapi/v1/sd-models").json()]
    assert titles[0].startswith("tiny-a.safetensors [") and titles[1].startswith("tiny-b.safetensors [")


def test_img2img_and_inpaint_through_the_core(real) -> None:
    _, client = real
    init = b64_png(Image.new("RGB", (64, 64), (200, 30, 30)))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    body = {**SMALL, "init_images": [init], "denoising_strength": 0.6, "seed": 3}
    plain = client.post("/sdapi/v1/img2img", json=body)
    assert plain.status_code == 200, plain.text
    assert json.loads(plain.json()["info"])["denoising_strength"] == 0.6
    inpaint = client.post("/sdapi/v1/img2img", json={**body, "mask": b64_png(mask), "inpainting_fill": 1,
                                                     "inpaint_full_res": False, "mask_blur": 0})
    assert inpaint.status_code == 200, inpaint.text
    result = decode(inpaint.json()["images"][0]).convert("RGB")
    assert result.size == (64, 64) and result.getpixel((2, 2)) == (200, 30, 30)  # unmasked pixels kept
    assert "Mask blur" not in json.loads(inpaint.json()["info"])["extra_generation_params"]


@pytest.mark.parametrize(("body", "status", "error"), [
    ({"sampler_name": "not a sampler"}, 400, "UnknownSampler"),
    ({"steps": 0}, 422, "InvalidRequest"),
    ({"width": 65}, 422, "InvalidRequest"),
    ({"override_settings": {"sd_model_checkpoint": "nope"}}, 404, "ModelNotFound"),
])
def test_errors_from_the_real_core(real, body: dict, status: int, error: str) -> None:
    _, client = real
    response = client.post("/sdapi/v1/txt2img", json={**SMALL, **body})
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


def test_bad_base64_from_the_real_app(real) -> None:
    _, client = real
    response = client.post("/sdapi/v1/img2img", json={**SMALL, "init_images": ["%%%"]})
    assert response.status_code == 400 and response.json()["error"] == "InvalidImage"


def test_model_management_routes(real) -> None:
    app, client = real
    assert client.post("/sdapi/v1/unload-checkpoint").json() == {}
    assert len(app.models.checkpoints.keys()) == 0
    assert client.post("/sdapi/v1/reload-checkpoint").json() == {}
    assert len(app.models.checkpoints.keys()) == 1
    assert client.post("/sdapi/v1/refresh-checkpoints").status_code == 200
    assert client.get("/sdapi/v1/memory").json()["ram"]["total"] > 0
    assert any(s["name"] == "Euler" for s in client.get("/sdapi/v1/samplers").json())


def test_job_api_through_the_core(real) -> None:
    _, client = real
    created = client.post("/api/v1/jobs", json={**SMALL, "mode": "txt2img", "seed": 5, "steps": 3})
    assert created.status_code == 202
    job_id = created.json()["job_id"]
    kinds = []
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as stream:
        kinds = [line[len("event: "):] for line in stream.iter_lines() if line.startswith("event: ")]
    assert kinds[0] == "status" and kinds[-1] == "finished"
    status = client.get(f"/api/v1/jobs/{job_id}").json()
    assert status["state"] == "done" and status["result"]["info"]["seed"] == 5
    assert decode(status["result"]["images"][0]).size == (64, 64)


@pytest.mark.slow
def test_auth_on_the_real_app(tmp_path: Path) -> None:
    app = make_real_app(tmp_path, api_auth=(("ann", "pw"),))
    with serving(app, timeout=60) as client:
        assert client.post("/sdapi/v1/txt2img", json=SMALL).status_code == 401
        response = client.post("/sdapi/v1/txt2img", json=SMALL, auth=("ann", "pw"))
        assert response.status_code == 200 and len(response.json()["images"]) == 1
        assert [job.owner for job in app.jobs.list()] == ["ann"]


@pytest.mark.slow
def test_oversized_jobs_are_refused_at_once_and_the_server_stays_up(real) -> None:
    """The request that once grew the server to 20 GB: refused before it is queued; so is one within the caps
    whose working memory exceeds the machine's."""
    app, client = real
    queued = len(app.jobs.list())
    huge = client.post("/sdapi/v1/txt2img", json={**SMALL, "batch_size": 100000})
    assert huge.status_code == 422 and "batch_size must be between 1 and 64" in huge.json()["detail"]
    too_big = client.post("/sdapi/v1/txt2img", json={**SMALL, "width": 4096, "height": 4096, "batch_size": 64,
                                                     "n_iter": 1000})
    assert too_big.status_code == 413, too_big.text
    assert "working memory" in too_big.json()["detail"] and "has in all" in too_big.json()["detail"]
    assert len(app.jobs.list()) == queued  # refused before anything was queued
    images, _ = txt2img(client, seed=5)
    assert images[0].size == (64, 64)
