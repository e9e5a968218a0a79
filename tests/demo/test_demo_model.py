"""The shipped demo checkpoint loads like any real one (SD 1.x), draws the background the prompt names, keeps an
img2img init at low strength and inpaints only inside the mask.

Skipped when models/Stable-diffusion/demo-shapes.safetensors is absent (it is produced by
`python -m tools.demo_model.train`)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from modules.models.components import ComponentSet
from modules.models.identity import Family, ModelIdentity
from modules.models.probe import probe
from modules.models.records import read_resolution
from modules.paths import REPO_ROOT
from tools.demo_model.classify import classify
from tools.demo_model.dataset import Scene, caption, render
from tools.demo_model.evaluate import Painter, open_demo, shape_box_mask

DEMO = REPO_ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"

pytestmark = pytest.mark.skipif(not DEMO.is_file(), reason=f"{DEMO.name} is not installed")


@pytest.fixture(scope="module")
def demo() -> Iterator[ComponentSet]:
    with open_demo(DEMO) as components:
        yield components


def test_file_is_a_small_sd1_checkpoint(demo: ComponentSet) -> None:
    assert DEMO.stat().st_size <= 30 * 2**20
    assert probe(DEMO) == ModelIdentity(Family.SD1)
    assert demo.identity == ModelIdentity(Family.SD1)
    assert demo.unet.config.cross_attention_dim == demo.text_encoders[0].config.hidden_size
    assert 2 ** (len(demo.vae.config.block_out_channels) - 1) == 8
    assert read_resolution(DEMO) == (64, 64)  # the UI sets width/height from it


EASY_PROMPTS = [(("white", "black", "square"), 1), (("yellow", "blue", "circle"), 2)]


@pytest.mark.slow
@pytest.mark.parametrize(("combination", "seed"), EASY_PROMPTS)
def test_draws_the_background_colour_of_the_prompt(demo: ComponentSet, combination: tuple[str, str, str],
                                                    seed: int) -> None:
    image = Painter(demo).txt2img(caption(*combination), seed)
    assert image.shape == (64, 64, 3)
    assert classify(image).background == combination[1]


INIT = Scene("white", "blue", "square", size=32, x=16, y=16)


@pytest.mark.slow
def test_img2img_at_low_strength_keeps_the_init_image_and_at_full_strength_follows_the_prompt(
        demo: ComponentSet) -> None:
    """At 0.3 the init is kept with its own caption and with one sharing no colour or shape; at 1.0 that other
    caption wins."""
    painter, init, other = Painter(demo), render(INIT), caption("black", "yellow", "circle")
    low = classify(painter.img2img(init, INIT.caption, seed=3, strength=0.3))
    assert (low.foreground, low.background, low.shape) == INIT.combination
    low_other = classify(painter.img2img(init, other, seed=3, strength=0.3))
    assert (low_other.foreground, low_other.background) == ("white", "blue")
    high = classify(painter.img2img(init, other, seed=3, strength=1.0))
    assert high.background == "yellow"


@pytest.mark.slow
def test_inpaint_repaints_inside_the_mask_and_keeps_every_pixel_outside(demo: ComponentSet) -> None:
    init = render(INIT)
    mask = shape_box_mask(INIT)
    result = Painter(demo).inpaint(init, mask, caption("red", "blue", "square"), seed=4)
    assert np.array_equal(result[~mask], init[~mask])
    assert classify(result).foreground == "red"
