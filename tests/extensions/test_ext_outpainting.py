"""The built-in outpainting scripts (img2img): Poor man's outpainting and Outpainting mk2. Pure geometry (padding
per direction, the mask of the new area, mk2's passes and the part of the canvas each pass inpaints), the matched
noise (deterministic per seed, the known pixels' colours, other seeds other noise) and, over real HTTP on a tiny
model as A1111 API clients call them (`script_name` and A1111's positional `script_args`): the picture grows by the
requested pixels on the chosen sides, the old picture stays where the mask is 0, and bad input is a clear 4xx."""

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
from tests.api.api_helpers import serving
from tests.core.helpers import write_tiny_checkpoint

POOR = "Poor man's outpainting"
MK2 = "Outpainting mk2"
SMALL = {"prompt": "a cube", "width": 64, "height": 64, "steps": 2, "sampler_name": "Euler", "cfg_scale": 5,
         "denoising_strength": 0.75, "seed": 7}


@pytest.fixture(scope="module")
def host() -> ExtensionHost:
    host = ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)])
    host.load()
    return host


@pytest.fixture(scope="module")
def poor(host: ExtensionHost) -> Any:
    return sys.modules["sdwebui_extensions.outpainting.scripts.poor_mans_outpainting"]


@pytest.fixture(scope="module")
def mk2(host: ExtensionHost) -> Any:
    return sys.modules["sdwebui_extensions.outpainting.scripts.outpainting_mk2"]


@pytest.fixture(scope="module")
def noise(host: ExtensionHost) -> Any:
    return sys.modules["sdwebui_extensions.outpainting.outpaint.noise"]


def smooth_picture(width: int, height: int) -> Image.Image:
    """A smooth gradient (it survives the VAE's round trip better than noise)."""
    x = np.linspace(0, 1, width)[None, :]
    y = np.linspace(0, 1, height)[:, None]
    pixels = np.stack([40 + 180 * x + 0 * y, 200 - 150 * y + 0 * x, 90 + 60 * x * y], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


# -- geometry (no model) ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("directions,expected", [
    (["left"], {"left": 16, "right": 0, "up": 0, "down": 0}),
    (["right", "down"], {"left": 0, "right": 16, "up": 0, "down": 16}),
    (["left", "right", "up", "down"], {"left": 16, "right": 16, "up": 16, "down": 16}),
    (["up"], {"left": 0, "right": 0, "up": 16, "down": 0}),
])
def test_padding_per_direction(poor, directions, expected):
    assert poor.padding((64, 48), 16, directions) == expected


def test_padding_rounds_up_to_multiples_of_8(poor):
    assert poor.padding((64, 48), 12, ["left"])["left"] == 16  # pixels rounded up to a multiple of 8
    # a 60x50 picture: the width's missing 4 go to the first chosen side, the height's 6 to the bottom
    assert poor.padding((60, 50), 16, ["left", "right"]) == {"left": 20, "right": 16, "up": 0, "down": 6}
    assert poor.padding((60, 50), 16, ["right", "up", "down"]) == {"left": 0, "right": 20, "up": 22, "down": 16}


def test_mask_covers_exactly_the_new_area(poor):
    picture = smooth_picture(40, 24)
    pad = {"left": 8, "right": 0, "up": 16, "down": 8}
    canvas, mask = poor.padded(picture, pad)
    assert canvas.size == mask.size == (48, 48) and mask.mode == "L"
    expected = np.full((48, 48), 255, np.uint8)
    expected[16:40, 8:48] = 0
    assert np.array_equal(np.asarray(mask), expected)
    pixels = np.asarray(canvas)
    assert np.array_equal(pixels[16:40, 8:48], np.asarray(picture))
    assert not pixels[:16].any() and not pixels[40:].any() and not pixels[:, :8].any()  # black canvas


@pytest.mark.parametrize("value,result", [
    (["down", "LEFT"], ("left", "down")), ("up, right", ("right", "up")), (("left",), ("left",))])
def test_directions_are_read_in_a1111_order(poor, value, result):
    assert poor.directions_of(value, poor.TITLE) == result


@pytest.mark.parametrize("value,message", [([], "at least one"), (None, "at least one"),
                                           (["sideways"], "unknown outpainting direction"), (3, "must be a list")])
def test_bad_directions_are_refused(poor, value, message):
    with pytest.raises(UserError, match=message):
        poor.directions_of(value, poor.TITLE)


def test_masked_content_by_index_or_name(poor):
    assert [poor.fill_index(v) for v in (0, 1.0, "original", "Latent Noise", "latent nothing")] == [0, 1, 1, 2, 3]
    with pytest.raises(UserError, match="unknown masked content"):
        poor.fill_index(4)


@pytest.mark.parametrize("size,directions,expected", [
    ((64, 48), ["down", "left"], [("left", {"left": 16, "right": 0, "up": 0, "down": 0}),
                                  ("down", {"left": 0, "right": 0, "up": 0, "down": 16})]),
    ((64, 48), ["up"], [("up", {"left": 0, "right": 0, "up": 16, "down": 0})]),
    # 60x50: the first pass also makes both sides multiples of 8 (width at the right, height at the top)
    ((60, 50), ["right", "up"], [("right", {"left": 0, "right": 20, "up": 6, "down": 0}),
                                 ("up", {"left": 0, "right": 0, "up": 16, "down": 0})]),
])
def test_mk2_pads_one_side_per_pass(mk2, size, directions, expected):
    steps = mk2.passes(size, 16, directions)
    assert steps == expected
    total = {side: sum(pad[side] for _, pad in steps) for side in mk2.SIDES}
    assert total == mk2.padding(size, 16, directions)
    width, height = size
    for _, pad in steps:  # every pass's canvas has sides that are multiples of 8
        width, height = width + pad["left"] + pad["right"], height + pad["up"] + pad["down"]
        assert width % 8 == 0 and height % 8 == 0


def test_mk2_geometry_matches_poor_mans(poor, mk2):
    for size, directions in (((64, 48), ["left", "up"]), ((61, 47), ["right"]), ((64, 64), list(mk2.SIDES))):
        assert mk2.padding(size, 24, directions) == poor.padding(size, 24, directions)
    picture = smooth_picture(24, 16)
    pad = {"left": 0, "right": 8, "up": 0, "down": 8}
    for got, want in zip(mk2.padded(picture, pad), poor.padded(picture, pad)):
        assert np.array_equal(np.asarray(got), np.asarray(want))


def test_mk2_inpaints_the_side_of_the_canvas_as_wide_as_the_img2img_size(mk2):
    pad = {"left": 16, "right": 16, "up": 16, "down": 16}
    assert mk2.region((80, 64), "left", pad, (64, 64)) == (0, 0, 64, 64)
    assert mk2.region((80, 64), "right", pad, (64, 64)) == (16, 0, 80, 64)
    assert mk2.region((96, 80), "up", pad, (64, 48)) == (0, 0, 96, 48)
    assert mk2.region((96, 80), "down", pad, (64, 48)) == (0, 32, 96, 80)
    assert mk2.region((80, 64), "left", pad, (512, 512)) == (0, 0, 80, 64)  # at most the canvas
    assert mk2.region((300, 64), "right", {"right": 100}, (64, 64)) == (196, 0, 300, 64)  # at least the strip


def _known_and_hole() -> tuple[np.ndarray, np.ndarray]:
    pixels = np.asarray(smooth_picture(80, 64), dtype=np.float64) / 255.0
    mask = np.zeros((64, 80))
    mask[:, :16] = 1.0
    mask[:8, :] = 1.0
    pixels = pixels * (1 - mask[..., None])  # the hole is black, as on the padded canvas
    return pixels, mask


def test_matched_noise_is_deterministic_per_seed_and_keeps_the_picture(noise):
    pixels, mask = _known_and_hole()
    first = noise.matched_noise(pixels, mask, 5, 1.0, 0.05)
    assert first.shape == pixels.shape and 0.0 <= first.min() and first.max() <= 1.0
    assert np.array_equal(first, noise.matched_noise(pixels, mask, 5, 1.0, 0.05))
    assert np.array_equal(first, noise.matched_noise(pixels, mask, [5], 1.0, 0.05))
    known = mask == 0
    assert np.array_equal(first[known], pixels[known])
    other = noise.matched_noise(pixels, mask, 6, 1.0, 0.05)
    assert np.abs(first - other)[~known].mean() > 0.02  # another seed, other noise
    assert np.array_equal(first[known], other[known])


@pytest.mark.parametrize("falloff,variation", [(1.0, 0.05), (0.2, 0.0), (3.0, 1.0)])
def test_matched_noise_has_the_known_colours(noise, falloff, variation):
    pixels, mask = _known_and_hole()
    filled = noise.matched_noise(pixels, mask, 11, falloff, variation)
    hole, known = filled[mask == 1], pixels[mask == 0]
    assert np.abs(hole.mean(axis=0) - known.mean(axis=0)).max() < 0.02  # the known region's mean colour
    assert hole.min(axis=0).min() >= known.min() - 1e-9 and hole.max() <= known.max() + 1e-9
    assert hole.std(axis=0).max() > 0.01  # noise, not a flat colour


def test_matched_noise_fall_off_changes_the_detail(noise):
    pixels, mask = _known_and_hole()

    def roughness(falloff: float) -> float:
        filled = noise.matched_noise(pixels, mask, 3, falloff, 0.05)[8:, :16]
        return float(np.abs(np.diff(filled, axis=1)).mean())

    assert roughness(0.0) > roughness(1.0) > roughness(3.0)  # lower exponent = more fine detail


def test_matched_noise_needs_known_pixels(noise):
    with pytest.raises(ValueError, match="known pixels"):
        noise.matched_noise(np.zeros((8, 8, 3)), np.ones((8, 8)), 1)


# -- the real App over HTTP --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, httpx.Client]]:
    data = tmp_path_factory.mktemp("outpainting")
    write_tiny_checkpoint(data)
    app = build_app(LaunchOptions(data_dir=data, api=True))
    with serving(app, timeout=300) as client:
        yield app, client


def encode(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


def post(client: httpx.Client, title: str, args: Any, endpoint: str = "img2img", **fields: Any) -> httpx.Response:
    body = {**SMALL, "script_name": title, "script_args": args, **fields}
    if endpoint == "img2img":
        body.setdefault("init_images", [encode(smooth_picture(64, 64))])
    return client.post(f"/sdapi/v1/{endpoint}", json=body)


def run(client: httpx.Client, title: str, args: Any, **fields: Any) -> tuple[list[Image.Image], dict[str, Any]]:
    response = post(client, title, args, **fields)
    assert response.status_code == 200, response.text
    data = response.json()
    return [decode(text) for text in data["images"]], json.loads(data["info"])


@pytest.mark.slow
def test_listed_for_img2img_only(served):
    _, client = served
    listed = client.get("/sdapi/v1/scripts").json()
    assert POOR.lower() in listed["img2img"] and POOR.lower() not in listed["txt2img"]
    info = {(row["name"], row["is_img2img"]): row for row in client.get("/sdapi/v1/script-info").json()}
    args = info[(POOR.lower(), True)]["args"]
    assert [arg["name"] for arg in args] == ["pixels", "mask_blur", "inpainting_fill", "direction"]
    assert args[0]["minimum"] == 8 and args[0]["maximum"] == 256 and args[0]["value"] == 128
    assert args[2]["choices"] == ["fill", "original", "latent noise", "latent nothing"] and args[2]["value"] == "fill"
    assert args[3]["value"] == ["left", "right", "up", "down"]
    assert MK2.lower() in listed["img2img"] and MK2.lower() not in listed["txt2img"]
    args = info[(MK2.lower(), True)]["args"]
    assert [arg["name"] for arg in args] == ["info", "mk2_pixels", "mk2_mask_blur", "mk2_direction", "noise_q",
                                                     "color_variation"]
    assert [arg["value"] for arg in args[1:]] == [128, 8, ["left", "right", "up", "down"], 1.0, 0.05]
    assert args[4]["label"] == "Fall-off exponent (lower=higher detail)" and args[4]["maximum"] == 4


@pytest.mark.slow
@pytest.mark.parametrize("directions,size,offset", [
    (["left", "up"], (80, 80), (16, 16)),
    (["right"], (80, 64), (0, 0)),
    (["left", "right", "up", "down"], (96, 96), (16, 16)),
])
def test_poor_mans_outpainting_grows_the_picture(served, directions, size, offset):
    _, client = served
    init = smooth_picture(64, 64)
    (picture,), info = run(client, POOR, [16, 4, 1, directions], init_images=[encode(init)])
    assert picture.size == size
    assert info["all_seeds"] == [7] and "Mask blur: 4" in info["infotexts"][0]
    x, y = offset
    centre = np.asarray(picture.convert("RGB"), dtype=np.int16)[y + 16:y + 48, x + 16:x + 48]
    assert np.abs(centre - np.asarray(init, dtype=np.int16)[16:48, 16:48]).max() <= 2  # kept where the mask is 0


@pytest.mark.slow
def test_poor_mans_outpainting_masked_content_and_rounding(served):
    _, client = served
    init = smooth_picture(60, 52)
    (picture,), _ = run(client, POOR, [8, 4, "latent noise", ["down"]],
                        init_images=[encode(init)])
    assert picture.size == (64, 64)  # 60 -> 64 at the right; 52 + 8 -> 64 at the bottom
    kept = np.asarray(picture.convert("RGB"), dtype=np.int16)[8:40, 8:48]
    assert np.abs(kept - np.asarray(init, dtype=np.int16)[8:40, 8:48]).max() <= 2


@pytest.mark.slow
def test_poor_mans_outpainting_errors_are_4xx(served):
    _, client = served
    txt2img = post(client, POOR, [16, 4, 0, ["left"]], endpoint="txt2img")
    assert 400 <= txt2img.status_code < 500 and "works in img2img only" in txt2img.text, txt2img.text
    for args, text in (([16, 4, 0, []], "choose at least one outpainting direction"),
                       ([300, 4, 0, ["left"]], "pixels to expand must be a whole number from 8 to 256"),
                       ([0, 4, 0, ["left"]], "from 8 to 256"),
                       ([16, 99, 0, ["left"]], "mask blur must be a whole number from 0 to 64"),
                       ([16, 4, "smudge", ["left"]], "unknown masked content"),
                       ([16, 4, 0, ["north"]], "unknown outpainting direction")):
        response = post(client, POOR, args)
        assert 400 <= response.status_code < 500 and text in response.text, response.text
        assert "Traceback" not in response.text
    masked = post(client, POOR, [16, 4, 0, ["left"]], mask=encode(Image.new("L", (64, 64), 255)))
    assert 400 <= masked.status_code < 500 and "without an inpaint mask" in masked.text, masked.text


@pytest.mark.slow
@pytest.mark.parametrize("directions,size,offset", [
    (["left", "up"], (80, 80), (16, 16)),
    (["down"], (64, 80), (0, 0)),
    (["left", "right", "up", "down"], (96, 96), (16, 16)),
])
def test_outpainting_mk2_grows_the_picture(served, directions, size, offset):
    _, client = served
    init = smooth_picture(64, 64)
    (picture,), info = run(client, MK2, [None, 16, 8, directions, 1.0, 0.05], init_images=[encode(init)])
    assert picture.size == size
    assert info["all_seeds"] == [7] and "Mask blur: 8" in info["infotexts"][0]
    x, y = offset
    pixels = np.asarray(picture.convert("RGB"), dtype=np.int16)
    centre = pixels[y + 24:y + 40, x + 24:x + 40]  # beyond the reach of the blurred mask (2.5 x 8 pixels)
    assert np.abs(centre - np.asarray(init, dtype=np.int16)[24:40, 24:40]).max() <= 2  # kept where the mask is 0
    again, _ = run(client, MK2, [None, 16, 8, directions, 1.0, 0.05], init_images=[encode(init)])
    assert np.array_equal(np.asarray(again[0]), np.asarray(picture))  # the same seed, the same picture


@pytest.mark.slow
def test_outpainting_mk2_batch_count_gives_a_grid_and_a_seed_per_picture(served):
    _, client = served
    pictures, info = run(client, MK2, ["", 8, 4, ["right"], 0.5, 0.2], n_iter=2, seed=20)
    assert [p.size for p in pictures] == [(144, 64), (72, 64), (72, 64)]  # the grid (one row), then the pictures
    assert info["all_seeds"] == [20, 20, 21]
    first, second = (np.asarray(p.convert("RGB"), dtype=np.int16) for p in pictures[1:])
    assert np.abs(first[:, 64:] - second[:, 64:]).mean() > 1  # other seeds, other new strips
    assert np.array_equal(np.asarray(pictures[0].convert("RGB"))[:, 72:], second.astype(np.uint8))


@pytest.mark.slow
def test_outpainting_mk2_errors_are_4xx(served):
    _, client = served
    txt2img = post(client, MK2, ["", 16, 8, ["left"], 1.0, 0.05], endpoint="txt2img")
    assert 400 <= txt2img.status_code < 500 and "works in img2img only" in txt2img.text, txt2img.text
    for args, text in ((["", 16, 8, [], 1.0, 0.05], "choose at least one outpainting direction"),
                       (["", 512, 8, ["left"], 1.0, 0.05], "pixels to expand must be a whole number from 8 to 256"),
                       (["", 16, -1, ["left"], 1.0, 0.05], "mask blur must be a whole number from 0 to 64"),
                       (["", 16, 8, ["left"], 5.0, 0.05], "fall-off exponent must be a number from 0.0 to 4.0"),
                       (["", 16, 8, ["left"], 1.0, 2], "color variation must be a number from 0.0 to 1.0"),
                       (["", 16, 8, ["up", "sideways"], 1.0, 0.05], "unknown outpainting direction")):
        response = post(client, MK2, args)
        assert 400 <= response.status_code < 500 and text in response.text, response.text
        assert "Traceback" not in response.text
    masked = post(client, MK2, ["", 16, 8, ["left"], 1.0, 0.05], mask=encode(Image.new("L", (64, 64), 255)))
    assert 400 <= masked.status_code < 500 and "without an inpaint mask" in masked.text, masked.text
