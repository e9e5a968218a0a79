"""The built-in X/Y/Z plot: A1111 value syntax, validation before generating, and labelled grids on tiny models."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest
from helpers_ext import REGISTRY, run_with_host, small_request
from PIL import Image

from modules.errors import UnknownSampler, UserError
from modules.extensions.host import BUILTIN_ROOT, ExtensionHost, RunServices
from modules.extensions.loader import ExtensionRoot
from modules.types import GenerationRequest, GenerationResult


@pytest.fixture(scope="module")
def host() -> ExtensionHost:
    host = ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)])
    host.load()
    return host


@pytest.fixture(scope="module")
def axes(host: ExtensionHost) -> Any:
    return sys.modules["sdwebui_extensions.xyz_grid.xyz.axes"]


class Recorder:
    """RunServices whose generate() runs the tiny model and remembers the requests."""

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.requests: list[GenerationRequest] = []
        self.grids: list[tuple[Image.Image, str]] = []
        self.interrupt_after = interrupt_after

    def generate(self, request: GenerationRequest) -> GenerationResult:
        self.requests.append(request)
        return run_with_host(ExtensionHost(), request)

    def interrupted(self) -> bool:
        return self.interrupt_after is not None and len(self.requests) >= self.interrupt_after

    def services(self) -> RunServices:
        return RunServices(self.generate, lambda name: REGISTRY.resolve(name).label,
                           lambda name: f"{name}.safetensors", lambda image, text: self.grids.append((image, text)),
                           self.interrupted)


def plot(host: ExtensionHost, recorder: Recorder, args: Any, **fields: Any) -> GenerationResult:
    request = host.request_from_api("x/y/z plot", args, None, small_request(steps=1, **fields))
    return host.run_script(host.selected_script(request), request, recorder.services(), {})


def test_value_syntax_follows_a1111(axes):
    assert axes.split_values('a, "b, c",d ,, ') == ["a", "b, c", "d"]
    assert axes.expand_ints(["1-5"]) == [1, 2, 3, 4, 5]
    assert axes.expand_ints(["1-10 (+2)"]) == [1, 3, 5, 7, 9]
    assert axes.expand_ints(["10-20 [3]"]) == [10, 15, 20]
    assert axes.expand_ints(["10-1 (-3)", "42"]) == [10, 7, 4, 1, 42]
    assert axes.expand_floats(["0.5-1.5 (+0.5)"]) == [0.5, 1.0, 1.5]
    assert axes.expand_floats(["1-2 [3]", "7.5"]) == [1.0, 1.5, 2.0, 7.5]
    steps = axes.find_axis("steps", "txt2img")
    assert steps.parse("1-3, 8") == [1, 2, 3, 8]
    assert axes.find_axis(4, "txt2img").label == "Steps"  # A1111 clients send indexes
    with pytest.raises(UserError, match="Steps values 'a,b' are not valid"):
        steps.parse("a,b")
    with pytest.raises(UserError, match="Unknown X/Y/Z axis type 'Denoising'"):
        axes.find_axis("Denoising", "txt2img")  # img2img only


def test_two_by_two_grid_with_labels(host):
    recorder = Recorder()
    result = plot(host, recorder, ["Steps", "1,2", "CFG Scale", "3, 7"], seed=-1)

    combos = [(r.steps, r.cfg_scale) for r in recorder.requests]
    assert sorted(combos) == [(1, 3.0), (1, 7.0), (2, 3.0), (2, 7.0)]
    assert len({r.seed for r in recorder.requests}) == 1 and recorder.requests[0].seed != -1  # fixed once
    grid, cells = result.images[0], result.images[1:]
    assert len(cells) == 4 and all(cell.size == (64, 64) for cell in cells)
    assert grid.width > 128 and grid.height > 128  # label column and band
    left, top = grid.width - 128, grid.height - 128
    for index, cell in enumerate(cells):  # cells in A1111 order: x fastest
        ix, iy = index % 2, index // 2
        box = (left + 64 * ix, top + 64 * iy, left + 64 * (ix + 1), top + 64 * (iy + 1))
        assert grid.crop(box).tobytes() == cell.convert("RGB").tobytes()
    pixels = np.asarray(grid)
    assert pixels[:top, left:].min() < 100 and pixels[top:, :left].min() < 100  # text drawn in both margins
    assert tuple(pixels[0, 0]) == (255, 255, 255)
    assert recorder.grids[0][0] is grid
    assert 'Script: X/Y/Z plot, X Type: Steps, X Values: "1,2", Y Type: CFG Scale' in result.infotexts[0]
    assert result.infotexts[1] != result.infotexts[0] and len(result.seeds) == 5


def test_grid_without_legend_is_cells_and_margins(host):
    args = {"x_type": "Seed", "x_values": "1, 2", "y_type": "Prompt S/R", "y_values": "cube, ball",
            "draw_legend": False, "margin_size": 4, "include_lone_images": False}
    recorder = Recorder()
    result = plot(host, recorder, args)
    assert len(result.images) == 1 and result.images[0].size == (132, 132)
    assert [(r.seed, r.prompt) for r in recorder.requests] == [
        (1, "a red cube"), (2, "a red cube"), (1, "a red ball"), (2, "a red ball")]


def test_z_axis_sub_grids_and_checkpoint_outer_loop(host):
    args = {"x_type": "Seed", "x_values": "1,2", "z_type": "Checkpoint name", "z_values": "a, b",
            "include_sub_grids": True}
    recorder = Recorder()
    result = plot(host, recorder, args)
    assert [r.checkpoint for r in recorder.requests] == ["a.safetensors"] * 2 + ["b.safetensors"] * 2
    main, sub_a, sub_b = result.images[:3]
    assert len(result.images) == 3 + 4
    assert main.width == sub_a.width + sub_b.width and main.height > sub_a.height  # titles above
    assert sub_a.size == (128, 64 + (sub_a.height - 64)) and sub_a.height > 64  # X labels, no Y labels


def test_values_are_checked_before_generating(host):
    recorder = Recorder()
    with pytest.raises(UserError, match="Prompt S/R did not find 'dog'"):
        plot(host, recorder, ["Prompt S/R", "dog, cat"])
    with pytest.raises(UnknownSampler):
        plot(host, recorder, ["Sampler", "Euler, Not A Sampler"])
    assert recorder.requests == []


def test_interrupt_keeps_what_was_done(host):
    recorder = Recorder(interrupt_after=1)
    result = plot(host, recorder, ["Seed", "1,2,3"])
    assert result.interrupted and len(recorder.requests) == 1
    grid = np.asarray(result.images[0])
    assert grid.shape[1] == 3 * 64 and grid[-64:, -128:].max() == 0  # the two missing cells are black
