"""The built-in X/Y/Z plot: A1111 value syntax, validation before generating, and labelled grids on tiny models."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest
from PIL import Image

from modules.errors import UnknownSampler, UserError
from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
from modules.extensions.loader import ExtensionRoot
from modules.extensions.scripts import RunServices
from modules.types import GenerationRequest, GenerationResult
from tests.extensions.helpers import REGISTRY, run_with_host, small_request


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
    request = host.scripts.request_from_api("x/y/z plot", args, None, small_request(steps=1, **fields))
    return host.scripts.run_script(host.scripts.selected_script(request), request, recorder.services(), {})


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
    with pytest.raises(UserError, match="Unknown X/Y/Z axis type 'Hires steps'"):
        axes.find_axis("Hires steps", "img2img")  # txt2img only


@pytest.mark.slow
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


@pytest.mark.slow
def test_grid_without_legend_is_cells_and_margins(host):
    args = {"x_type": "Seed", "x_values": "1, 2", "y_type": "Prompt S/R", "y_values": "cube, ball",
            "draw_legend": False, "margin_size": 4, "include_lone_images": False}
    recorder = Recorder()
    result = plot(host, recorder, args)
    assert len(result.images) == 1 and result.images[0].size == (132, 132)
    assert [(r.seed, r.prompt) for r in recorder.requests] == [
        (1, "a red cube"), (2, "a red cube"), (1, "a red ball"), (2, "a red ball")]


@pytest.mark.slow
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


@pytest.fixture(scope="module")
def controls(host: ExtensionHost) -> Any:
    return sys.modules["sdwebui_extensions.xyz_grid.xyz.controls"]


A1111_ARGS = ["x_type", "x_values", "x_values_dropdown", "y_type", "y_values", "y_values_dropdown", "z_type",
              "z_values", "z_values_dropdown", "draw_legend", "include_lone_images", "include_sub_grids",
              "no_fixed_seeds", "vary_seeds_x", "vary_seeds_y", "vary_seeds_z", "margin_size", "csv_mode"]


def a1111_args(**values: Any) -> list[Any]:
    """A1111's full positional list (its UI defaults), with some values changed by name."""
    defaults = {"x_type": 1, "x_values": "", "x_values_dropdown": [], "y_type": 0, "y_values": "",
                "y_values_dropdown": [], "z_type": 0, "z_values": "", "z_values_dropdown": [], "draw_legend": True,
                "include_lone_images": False, "include_sub_grids": False, "no_fixed_seeds": False,
                "vary_seeds_x": False, "vary_seeds_y": False, "vary_seeds_z": False, "margin_size": 0,
                "csv_mode": False}
    assert set(values) <= set(defaults)
    return [values.get(name, defaults[name]) for name in A1111_ARGS]


def test_controls_are_a1111s_positional_layout(host, controls):
    entry = host.scripts.find_selectable("x/y/z plot", "txt2img")
    assert [info.name for info in host.scripts.arg_info(entry, "txt2img")] == A1111_ARGS
    assert list(controls.ARG_NAMES) == A1111_ARGS
    assert controls.named_args(a1111_args(margin_size=4)) == dict(zip(A1111_ARGS, a1111_args(margin_size=4)))
    assert controls.named_args([1, "1,2", []]) == {"x_type": 1, "x_values": "1,2", "x_values_dropdown": []}
    # this program's earlier layout: the third value is an axis type, not a list of dropdown values
    assert controls.named_args(["Steps", "1,2", "CFG Scale", "3"]) == {
        "x_type": "Steps", "x_values": "1,2", "y_type": "CFG Scale", "y_values": "3"}
    legacy = controls.named_args(["Seed", "1", 4, "2", "Nothing", "", False, False, True, True, 6])
    assert (legacy["y_type"], legacy["draw_legend"], legacy["no_fixed_seeds"], legacy["margin_size"]) == (
        4, False, True, 6)
    with pytest.raises(UserError, match="at most 18 positional arguments"):
        controls.named_args(list(range(19)))


def test_axis_types_by_a1111_index(axes):
    assert [axes.find_axis(i, "txt2img").label for i in (0, 1, 4, 6, 7, 9, 11, 17, 25)] == [
        "Nothing", "Seed", "Steps", "CFG Scale", "Prompt S/R", "Sampler", "Checkpoint name", "Schedule type",
        "Clip skip"]
    assert [axes.find_axis(i, "img2img").label for i in (5, 7, 9, 10, 16, 24, 25)] == [
        "CFG Scale", "Prompt S/R", "Sampler", "Checkpoint name", "Schedule type", "Clip skip", "Denoising"]
    assert axes.find_axis("6", "txt2img").label == "CFG Scale"
    assert [axes.find_axis(i, "txt2img").label for i in (5, 10, 26, 29)] == [
        "Hires steps", "Hires sampler", "Denoising", "Hires upscaler"]
    with pytest.raises(UserError, match="axis type 8 \\('Prompt order'\\) is not available for txt2img"):
        axes.find_axis(8, "txt2img")
    with pytest.raises(UserError, match="axis type 28 \\('Cond. Image Mask Weight'\\) is not available"):
        axes.find_axis(28, "img2img")
    with pytest.raises(UserError, match="out of range"):
        axes.find_axis(400, "img2img")


@pytest.mark.slow
def test_full_a1111_list_with_dropdown_values_and_varied_seeds(host):
    args = a1111_args(x_type=9, x_values="ignored", x_values_dropdown=["Euler", "Euler a"], y_type=1,
                      y_values="5, 20", vary_seeds_x=True, include_lone_images=True)
    recorder = Recorder()
    result = plot(host, recorder, args)
    cells = [(r.sampler, r.seed) for r in recorder.requests]
    assert cells == [("Euler", 5), ("Euler a", 6), ("Euler", 20), ("Euler a", 21)]  # Seed axis + X position
    assert len(result.images) == 1 + 4 and list(result.seeds[1:]) == [5, 6, 20, 21]
    assert 'X Type: Sampler, X Values: "Euler,Euler a", Y Type: Seed' in result.infotexts[0]

    recorder = Recorder()
    plot(host, recorder, a1111_args(x_values="7", y_type=4, y_values="1, 2", z_type=6, z_values="3, 4",
                                    vary_seeds_y=True, vary_seeds_z=True, no_fixed_seeds=True))
    assert [(r.seed, r.steps, r.cfg_scale) for r in recorder.requests] == [
        (7, 1, 3.0), (8, 2, 3.0), (9, 1, 4.0), (10, 2, 4.0)]  # y: +iy, z: +iz * len(Y)


def test_csv_mode_reads_the_text_and_random_seeds_stay_random(host):
    args = a1111_args(x_type=9, x_values="Euler a, Euler", x_values_dropdown=["DDIM"], csv_mode=True,
                      no_fixed_seeds=True, vary_seeds_x=True)
    recorder = Recorder()
    plot(host, recorder, args, seed=-1)
    assert [(r.sampler, r.seed) for r in recorder.requests] == [("Euler a", -1), ("Euler", -1)]


def test_ui_shows_the_dropdown_for_axes_with_choices(controls):
    from modules.extensions.api import UiBuilder

    builder = UiBuilder("txt2img", "xyz_grid", choices=lambda kind: ["Euler", "DDIM"] if kind == "samplers" else [])
    update = controls.value_inputs_update(builder)
    text, dropdown = update("Sampler", False, ["DDIM", "Gone"])
    assert text["visible"] is False and dropdown["visible"] is True
    assert dropdown["choices"] == ["Euler", "DDIM"] and dropdown["value"] == ["DDIM"]
    for axis_type, csv_mode in (("Sampler", True), ("Steps", False)):
        text, dropdown = update(axis_type, csv_mode, ["DDIM"])
        assert text["visible"] is True and dropdown["visible"] is False and dropdown["value"] == []


@pytest.mark.slow
def test_comments_of_the_cells_reach_the_plot_result(host):
    import dataclasses

    class Commenting(Recorder):
        def generate(self, request: GenerationRequest) -> GenerationResult:
            result = super().generate(request)
            return dataclasses.replace(result, comments=("Networks with errors: old (2)", f"seed {request.seed}"))

    result = plot(host, Commenting(), ["Seed", "1, 2, 1"])
    assert result.comments == ("Networks with errors: old (2)", "seed 1", "seed 2")


def test_other_extensions_axes_are_listed_after_ours_with_their_choices(host, axes):
    from modules.extensions.api import PlotAxis, UiBuilder

    labels = [axis.label for axis in axes.axes_for("txt2img", host.scripts.plot_axes())]
    assert labels[-11:] == [f"[ControlNet] {name}" for name in (
        "Enabled", "Model", "Weight", "Guidance Start", "Guidance End", "Control Mode", "Resize Mode", "Preprocessor",
        "Pre Resolution", "Pre Threshold A", "Pre Threshold B")]
    assert axes.find_axis("[controlnet] weight", "img2img", host.scripts.plot_axes()).kind is float
    clash = PlotAxis("Steps", int, lambda request, value: request)
    assert [a.label for a in axes.axes_for("txt2img", [clash])] == [a.label for a in axes.axes_for("txt2img")]
    assert axes.find_axis("[ControlNet] Enabled", "txt2img", host.scripts.plot_axes()).parse("yes, 0") == [True, False]
    controls = sys.modules["sdwebui_extensions.xyz_grid.xyz.controls"]
    builder = UiBuilder("txt2img", "xyz_grid", plot_axes=host.scripts.plot_axes)
    text, dropdown = controls.value_inputs_update(builder)("[ControlNet] Control Mode", False, ["Balanced", "x"])
    assert dropdown["choices"] == ["Balanced", "My prompt is more important", "ControlNet is more important"]
    assert dropdown["value"] == ["Balanced"] and text["visible"] is False
    with pytest.raises(ValueError):
        PlotAxis("Odd", list, lambda request, value: request)


@pytest.mark.slow
def test_setting_axes_override_the_job_as_a1111s_do(host, axes):
    recorder = Recorder()
    result = plot(host, recorder, ["Token merging ratio", "0, 0.5", "Negative Guidance minimum sigma", "15"])
    assert [r.overrides for r in recorder.requests] == [{"token_merging_ratio": 0.0, "s_min_uncond": 15.0},
                                                        {"token_merging_ratio": 0.5, "s_min_uncond": 15.0}]
    alone = run_with_host(ExtensionHost(), recorder.requests[1])
    assert result.images[2].tobytes() == alone.images[0].tobytes()  # a cell is the job it stands for
    with pytest.raises(UserError, match="Token merging ratio values must be from 0 to 0.9; got 0.95"):
        plot(host, Recorder(), ["Token merging ratio", "0.95"])
    with pytest.raises(UserError, match="RNG source 'quantum' is not one of GPU, CPU, NV"):
        plot(host, Recorder(), ["RNG source", "CPU, quantum"])
    labels = axes.a1111_labels("txt2img")
    for label in ("Negative Guidance minimum sigma", "Sigma Churn", "Skip Early CFG", "Eta", "Token merging ratio",
                  "Token merging ratio high-res", "Refiner switch at", "RNG source"):
        assert axes.find_axis(labels.index(label), "txt2img").label == label
