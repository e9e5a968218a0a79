"""The built-in SD upscale script: A1111's tiles, seeds and blending; progress per tile and interrupt between tiles
(fake generations); on the real App over HTTP, equality with a hand-composed reference (upscale, split, one plain
img2img per tile with the expected seed, blend), A1111's positional script_args, and clear errors. Also the X/Y/Z
plot's Hires axes on the real App, selected by A1111's axis indexes."""

from __future__ import annotations

import base64
import io
import json
import sys
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from modules.app import App
from modules.bootstrap import build_app
from modules.cli import LaunchOptions
from modules.errors import UserError
from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
from modules.extensions.loader import ExtensionRoot
from modules.extensions.scripts import RunServices
from modules.models.convert import save_single_file
from modules.models.identity import Family, ModelIdentity
from modules.models.tiny import build_tiny_components
from modules.types import GenerationRequest, GenerationResult, ProgressEvent
from tests.api.api_helpers import LiveServer
from tests.upscalers.helpers import save_compact

UPSCALERS = ["None", "Lanczos", "Nearest"]
LATENT = ["Latent", "Latent (bicubic)"]


@pytest.fixture(scope="module")
def host() -> ExtensionHost:
    host = ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)])
    host.load()
    return host


@pytest.fixture(scope="module")
def tiles(host: ExtensionHost) -> Any:
    return sys.modules["sdwebui_extensions.sd_upscale.upscale.tiles"]


def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def a1111_upscale(image: Image.Image, scale: float, resample: Image.Resampling) -> Image.Image:
    """A1111's Upscaler.upscale with a Pillow upscaler, for the scales used here (one pass suffices)."""
    dest = (int(image.width * scale // 8 * 8), int(image.height * scale // 8 * 8))
    image = image.resize((int(image.width * scale), int(image.height * scale)), resample=resample)
    return image if image.size == dest else image.resize(dest, resample=Image.Resampling.LANCZOS)


def blend_reference(size: tuple[int, int], tile: tuple[int, int], overlap: int, xs: list[int], ys: list[int],
                    pictures: list[np.ndarray]) -> np.ndarray:
    """A1111's combine_grid written as array arithmetic: each overlap is a linear blend with weights
    int(i * 255 / overlap) / 255, rounded as Pillow's masked paste rounds (x / 255 to nearest)."""
    (width, height), (tw, th) = size, tile
    weights = (np.arange(overlap, dtype=np.float32) * 255 / overlap).astype(np.uint8).astype(np.int64)

    def blend(under: np.ndarray, over: np.ndarray, mask: np.ndarray) -> np.ndarray:
        total = over.astype(np.int64) * mask + under.astype(np.int64) * (255 - mask) + 128
        return ((total + (total >> 8)) >> 8).astype(np.uint8)

    out = np.zeros((height, width, 3), np.uint8)
    index = 0
    for y in ys:
        row = np.zeros((th, width, 3), np.uint8)
        for x in xs:
            tile_pixels = pictures[index]
            index += 1
            if x == 0:
                row[:, :tw] = tile_pixels
                continue
            row[:, x:x + overlap] = blend(row[:, x:x + overlap], tile_pixels[:, :overlap], weights[None, :, None])
            row[:, x + overlap:x + tw] = tile_pixels[:, overlap:]
        if y == 0:
            out[:th] = row
            continue
        out[y:y + overlap] = blend(out[y:y + overlap], row[:overlap], weights[:, None, None])
        out[y + overlap:y + th] = row[overlap:]
    return out


# -- tiles, seeds, blending (no model) ------------------------------------------------------------------------


def test_split_places_tiles_as_a1111(tiles):
    image = picture(192, 128)
    grid = tiles.split(image, 64, 64, 16)
    # cols = ceil((192 - 16) / 48) = 4, dx = 128 / 3; rows = ceil((128 - 16) / 48) = 3, dy = 32
    assert [x for x, _ in grid.rows[0].tiles] == [0, 42, 85, 128]
    assert [row.y for row in grid.rows] == [0, 32, 64]
    assert grid.count == 12 and grid.columns == 4
    x, tile = grid.rows[1].tiles[2]
    assert np.array_equal(np.asarray(tile), np.asarray(image)[32:96, 85:149])
    assert [row.y for row in tiles.split(picture(64, 200), 64, 64, 0).rows] == [0, 45, 90, 136]  # dy = 136 / 3
    with pytest.raises(ValueError):
        tiles.split(image, 64, 64, 64)


def test_combine_blends_overlaps_linearly_as_a1111(tiles):
    image = picture(192, 128, seed=1)
    grid = tiles.split(image, 64, 64, 16)
    assert np.array_equal(np.asarray(tiles.combine(grid)), np.asarray(image))  # equal tiles: the picture back
    changed = [picture(64, 64, seed=10 + i) for i in range(grid.count)]
    combined = tiles.combine(grid.with_pictures(changed))
    expected = blend_reference((192, 128), (64, 64), 16, [0, 42, 85, 128], [0, 32, 64],
                               [np.asarray(p) for p in changed])
    assert np.array_equal(np.asarray(combined), expected)
    no_overlap = tiles.combine(tiles.split(image, 64, 64, 0).with_pictures(changed))
    assert no_overlap.size == (192, 128)


def a1111_seed_loop(seed: int, subseed: int, strength: float, count: int, batch_size: int) -> list[tuple[int, int]]:
    """What A1111's script does: process_images per batch (image k: seed + k, or seed when a variation strength is
    set; subseed + k), then p.seed = processed.seed + 1; a short last batch is filled up by repeating its image."""
    seeds, p_seed = [], seed
    for start in range(0, count, batch_size):
        batch = [(p_seed + (k if strength == 0 else 0), subseed + k) for k in range(batch_size)]
        seeds += batch[:min(batch_size, count - start)]
        p_seed += 1
    return seeds


@pytest.mark.parametrize("strength,count,batch_size", [(0.0, 12, 1), (0.0, 12, 2), (0.0, 7, 3), (0.5, 7, 3)])
def test_tile_seeds_follow_a1111s_batches(tiles, strength, count, batch_size):
    assert tiles.tile_seeds(100, 7, strength, count, batch_size) == a1111_seed_loop(100, 7, strength, count,
                                                                                   batch_size)
    assert tiles.tile_seeds(100, 7, 0.0, 5, 2)[:4] == [(100, 7), (101, 8), (101, 7), (102, 8)]


class FakeRun:
    """RunServices whose generations invert the init tile, remembering requests and the `part` of each."""

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.requests: list[GenerationRequest] = []
        self.parts: list[tuple[int, int] | None] = []
        self.saved: list[tuple[str, int]] = []
        self.interrupt_after = interrupt_after

    def generate(self, request: GenerationRequest, /, *, save: bool = True,
                 part: tuple[int, int] | None = None) -> GenerationResult:
        assert save is False and request.batch_size == 1 and request.n_iter == 1
        self.requests.append(request)
        self.parts.append(part)
        assert request.init_image is not None
        image = Image.fromarray(255 - np.asarray(request.init_image))
        text = f"{request.prompt}\nSteps: 2, Seed: {request.seed}, Size: {request.width}x{request.height}"
        return GenerationResult((image,), (request.seed,), (request.subseed,), (request.prompt,), ("",), (text,),
                                request)

    def choices(self, kind: str) -> list[str]:
        return {"upscalers": UPSCALERS, "hires_upscalers": LATENT + UPSCALERS}.get(kind, [])

    def upscale(self, image: Image.Image, name: str, scale: float) -> Image.Image:
        return a1111_upscale(image, scale, {"Lanczos": Image.Resampling.LANCZOS,
                                            "Nearest": Image.Resampling.NEAREST}[name])

    def services(self) -> RunServices:
        return RunServices(self.generate, str, str, lambda image, text: None,
                           lambda: self.interrupt_after is not None and len(self.requests) >= self.interrupt_after,
                           self.choices, self.upscale, lambda image, text, seed: self.saved.append((text, seed)))


def run_upscale(host: ExtensionHost, fake: FakeRun, args: Any, options: dict[str, Any] | None = None,
                **fields: Any) -> GenerationResult:
    values: dict[str, Any] = {"mode": "img2img", "prompt": "tiles", "seed": 100, "subseed": 7, "width": 64,
                              "height": 64, "init_image": picture(96, 64, seed=2)}
    values.update(fields)
    request = host.scripts.request_from_api("SD upscale", args, None, GenerationRequest(**values))
    script = host.scripts.selected_script(request)
    assert script is not None
    return host.scripts.run_script(script, request, fake.services(), options or {})


def test_tiles_are_generated_with_a1111_seeds_and_counted_as_parts(host, tiles):
    fake = FakeRun()
    result = run_upscale(host, fake, ["", 16, 1, 2.0], batch_size=2, n_iter=2)
    assert [r.seed for r in fake.requests] == [s for s, _ in tiles.tile_seeds(100, 7, 0.0, 12, 2)] + \
        [s for s, _ in tiles.tile_seeds(101, 7, 0.0, 12, 2)]
    assert fake.parts == [(index, 24) for index in range(24)]
    assert [image.size for image in result.images] == [(192, 128), (192, 128)]
    assert result.seeds == (100, 101) and not result.interrupted
    assert "SD upscale overlap: 16" in result.infotexts[0] and "SD upscale upscaler: Lanczos" in result.infotexts[0]
    assert "Seed: 101" in result.infotexts[1] and "Size: 64x64" in result.infotexts[1]
    assert [seed for _, seed in fake.saved] == [100, 101]
    upscaled = a1111_upscale(picture(96, 64, seed=2), 2.0, Image.Resampling.LANCZOS)
    inverted = [255 - np.asarray(tile) for tile in tiles.split(upscaled, 64, 64, 16).pictures()]
    expected = blend_reference((192, 128), (64, 64), 16, [0, 42, 85, 128], [0, 32, 64], inverted)
    assert np.array_equal(np.asarray(result.images[0]), expected)


def test_interrupt_stops_between_tiles(host):
    fake = FakeRun(interrupt_after=3)
    result = run_upscale(host, fake, ["", 16, "nearest", 2.0], n_iter=2)
    assert len(fake.requests) == 3 and result.interrupted and len(result.images) == 1
    assert fake.saved == []  # an unfinished picture is returned, not saved


def test_a_tile_skipped_before_its_first_step_stays_as_upscaled(host):
    fake = FakeRun()
    generate = fake.generate

    def skipping(request: GenerationRequest, /, **kwargs: Any) -> GenerationResult:
        result = generate(request, **kwargs)
        return result if len(fake.requests) != 2 else GenerationResult((), (), (), (), (), (), request)

    fake.generate = skipping  # type: ignore[method-assign]
    result = run_upscale(host, fake, ["", 0, "None", 1.0], init_image=picture(128, 64, seed=3))
    pixels = np.asarray(result.images[0])
    assert len(fake.requests) == 2 and not result.interrupted
    assert np.array_equal(pixels[:, :64], 255 - np.asarray(picture(128, 64, seed=3))[:, :64])
    assert np.array_equal(pixels[:, 64:], np.asarray(picture(128, 64, seed=3))[:, 64:])


def test_upscaler_none_keeps_the_size(host):
    fake = FakeRun()
    result = run_upscale(host, fake, {"upscaler_index": "None", "overlap": 0}, init_image=picture(128, 64))
    assert result.images[0].size == (128, 64) and len(fake.requests) == 2


def test_a_transparent_init_image_is_flattened_before_upscaling(host):
    fake = FakeRun()
    seen: list[Image.Image] = []
    upscale = fake.upscale
    fake.upscale = lambda image, name, scale: seen.append(image) or upscale(image, name, scale)  # type: ignore
    clear = Image.new("RGBA", (96, 64), (0, 0, 255, 0))
    run_upscale(host, fake, ["", 16, "Lanczos", 2.0], {"img2img_background_color": "#ff0000"}, init_image=clear)
    assert seen[0].mode == "RGB" and seen[0].getpixel((5, 5)) == (255, 0, 0)
    assert fake.requests[0].init_image is not None and fake.requests[0].init_image.getpixel((5, 5)) == (255, 0, 0)


@pytest.mark.parametrize("args,fields,message", [
    (["", 16, 0, 2.0], {"init_image": None}, "needs an init image"),
    (["", 16, "Foo", 2.0], {}, "unknown upscaler 'Foo'"),
    (["", 16, 9, 2.0], {}, "index 9 is out of range"),
    (["", 16, "Latent (bicubic)", 2.0], {}, "latent upscale modes"),
    (["", 16, 1, 2.0], {"mask": Image.new("L", (96, 64))}, "without an inpaint mask"),
    (["", 64, 1, 2.0], {"width": 64, "height": 48, "init_image": picture(40, 20)}, "overlap \\(64\\)"),
    (["", 16, 1, 1.0], {"width": 128, "height": 64}, "smaller than a tile"),
])
def test_bad_input_is_a_clear_error(host, args, fields, message):
    fake = FakeRun()
    with pytest.raises(UserError, match=message):
        run_upscale(host, fake, args, **fields)
    assert fake.requests == []


def test_progress_of_a_part_counts_parts():
    from modules.jobs.executor import JobContext
    from modules.processing import part_context

    events: list[ProgressEvent] = []
    job = JobContext("job", None, events.append)  # type: ignore[arg-type]
    part = part_context(job, 3, 12)
    part.report(ProgressEvent(1, 2))
    assert (events[0].job_no, events[0].job_count, events[0].step) == (3, 12, 1)


# -- the real App over HTTP --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, httpx.Client]]:
    import webui

    data = tmp_path_factory.mktemp("sd_upscale")
    folder = data / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    save_single_file(build_tiny_components(ModelIdentity(Family.SD1), seed=0), folder / "tiny.safetensors")
    save_compact(data / "models" / "ESRGAN" / "2x-Compact.pth", scale=2)
    launch = LaunchOptions(data_dir=data, api=True)
    app = build_app(launch)
    server = LiveServer(webui.build_server(app, launch)).start()
    client = httpx.Client(base_url=server.url, timeout=300)
    yield app, client
    client.close()
    server.stop()
    app.close()


def encode(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image.convert("RGB")


BODY = {"prompt": "a cube", "negative_prompt": "blurry", "width": 64, "height": 64, "steps": 2,
        "sampler_name": "Euler", "cfg_scale": 7, "denoising_strength": 0.5, "save_images": False}


def post(client: httpx.Client, route: str, **fields: Any) -> tuple[list[Image.Image], dict[str, Any]]:
    response = client.post(f"/sdapi/v1/{route}", json={**BODY, **fields})
    assert response.status_code == 200, response.text
    data = response.json()
    return [decode(text) for text in data["images"]], json.loads(data["info"])


@pytest.mark.slow
def test_sd_upscale_over_http_equals_the_hand_composed_reference(served):
    _, client = served
    init = picture(96, 64, seed=5)
    images, info = post(client, "img2img", init_images=[encode(init)], seed=100, subseed=7, batch_size=2, n_iter=2,
                        script_name="SD upscale", script_args=["", 16, 1, 2.0])
    assert [image.size for image in images] == [(192, 128), (192, 128)]  # 2 x the init image
    assert info["all_seeds"] == [100, 101]
    text = info["infotexts"][0]
    assert "SD upscale overlap: 16" in text and "SD upscale upscaler: Lanczos" in text
    assert "Seed: 100" in text and "Size: 64x64" in text and "Denoising strength: 0.5" in text
    assert "Seed: 101" in info["infotexts"][1]

    upscaled = a1111_upscale(init, 2.0, Image.Resampling.LANCZOS)
    xs, ys = [0, 42, 85, 128], [0, 32, 64]
    for n, image in enumerate(images):
        seeds = a1111_seed_loop(100 + n, 7, 0.0, 12, 2)
        done = []
        for (x, y), (seed, subseed) in zip([(x, y) for y in ys for x in xs], seeds):
            tile = upscaled.crop((x, y, x + 64, y + 64))
            (out,), _ = post(client, "img2img", init_images=[encode(tile)], seed=seed, subseed=subseed)
            done.append(np.asarray(out))
        expected = blend_reference((192, 128), (64, 64), 16, xs, ys, done)
        assert np.array_equal(np.asarray(image), expected), f"picture {n}"


@pytest.mark.slow
def test_sd_upscale_with_an_upscaler_model_file(served):
    """Index 3 is the first model file after None, Lanczos and Nearest (A1111's order)."""
    _, client = served
    images, info = post(client, "img2img", init_images=[encode(picture(64, 48, seed=6))], seed=9,
                        script_name="SD upscale", script_args=[None, 32, 3, 2.0])
    assert [image.size for image in images] == [(128, 96)]
    assert "SD upscale upscaler: 2x-Compact" in info["infotexts"][0]


@pytest.mark.slow
def test_sd_upscale_errors_over_http(served):
    _, client = served
    init = encode(picture(96, 64))
    for args, message in ((["", 16, "Latent", 2.0], "latent upscale modes"),
                          (["", 16, "4x_missing", 2.0], "unknown upscaler")):
        response = client.post("/sdapi/v1/img2img", json={**BODY, "init_images": [init], "script_name": "sd upscale",
                                                          "script_args": args})
        assert 400 <= response.status_code < 500 and message in response.text


@pytest.mark.slow
def test_xyz_hires_axes_by_a1111_index(served):
    """A1111 1.10 txt2img axis indexes: 29 = Hires upscaler, 5 = Hires steps, 26 = Denoising, 10 = Hires sampler."""
    _, client = served
    hires = {"enable_hr": True, "hr_scale": 2, "hr_upscaler": "Latent", "seed": 3}
    args = [29, "", ["Latent", "Nearest"], 5, "1, 2", [], 26, "0.3, 0.6", [],
            True, True, False, False, False, False, False, 0, False]
    images, info = post(client, "txt2img", script_name="x/y/z plot", script_args=args, **hires)
    cells, texts = images[1:], info["infotexts"][1:]
    assert len(cells) == 8 and all(cell.size == (128, 128) for cell in cells)
    expected = [(upscaler, steps, strength) for strength in ("0.3", "0.6") for steps in ("1", "2")
                for upscaler in ("Latent", "Nearest")]
    for text, (upscaler, steps, strength) in zip(texts, expected):
        assert f"Hires upscaler: {upscaler}," in text and f"Hires steps: {steps}," in text
        assert f"Denoising strength: {strength}," in text
    assert "X Type: Hires upscaler" in info["infotexts"][0] and "Z Type: Denoising" in info["infotexts"][0]

    args = [10, "", ["Euler a", "DPM++ 2M"], 0, "", [], 0, "", [], True, True, False, False, False, False, False, 0,
            False]
    images, info = post(client, "txt2img", script_name="x/y/z plot", script_args=args, **hires)
    assert ["Hires sampler: Euler a," in t for t in info["infotexts"][1:]] == [True, False]
    assert ["Hires sampler: DPM++ 2M," in t for t in info["infotexts"][1:]] == [False, True]

    response = client.post("/sdapi/v1/txt2img", json={**BODY, **hires, "script_name": "x/y/z plot",
                                                      "script_args": [29, "Lanczos, Bogus"]})
    assert response.status_code == 422 and "Hires upscaler 'Bogus' is not available" in response.text


@pytest.mark.slow
def test_a_real_job_counts_tiles_and_an_interrupt_stops_between_them(served):
    """Progress of an SD upscale job is reported per tile (12 tiles x 2 pictures = 24 parts); interrupting during
    tile 3 ends the job after that tile with one picture, marked interrupted."""
    from modules.extensions.scripts import SCRIPT_KEY
    from modules.jobs.executor import GenerationWork

    app, _ = served
    request = GenerationRequest(
        mode="img2img", prompt="a cube", seed=4, steps=2, width=64, height=64, sampler="Euler", n_iter=2,
        init_image=picture(96, 64), denoising_strength=0.5,
        extension_args={"sd_upscale": {"overlap": 16, "upscaler_index": "Lanczos", "scale_factor": 2.0},
                        SCRIPT_KEY: {"title": "SD upscale"}})
    subscription = app.jobs.subscribe()
    job = app.jobs.submit(GenerationWork(request, save=False))
    parts: list[tuple[int, int]] = []
    for event in subscription:
        if event.job_id != job.id:
            continue
        if event.kind == "progress":
            parts.append((event.progress.job_no, event.progress.job_count))
            if event.progress.job_no == 2:
                app.jobs.cancel(job.id)
        if event.kind == "finished":
            break
    subscription.close()
    result = job.outcome(60)
    assert {count for _, count in parts} == {24}
    assert [no for no, _ in parts] == sorted(no for no, _ in parts) and max(no for no, _ in parts) == 2
    assert result.interrupted and len(result.images) == 1 and result.images[0].size == (192, 128)
