"""Axis types of the X/Y/Z plot and A1111's value syntax.

Values are a comma-separated list read like CSV (so `"a, b", c` is two values); each item is trimmed. Number axes
also accept ranges, as in A1111:

- `1-5`         -> 1, 2, 3, 4, 5 (ends included)
- `1-10 (+2)`   -> 1, 3, 5, 7, 9 (step in parentheses, with its sign; `10-1 (-3)` counts down: 10, 7, 4, 1)
- `10-20 [3]`   -> 10, 15, 20 (count in brackets: evenly spaced, ends included; whole numbers truncated)
- floats alike: `0.5-1.5 (+0.5)` -> 0.5, 1.0, 1.5; `1-2 [3]` -> 1.0, 1.5, 2.0

Difference from A1111: a range with a negative step includes its end (A1111 adds 1 to the end whatever the sign,
so `5-1 (-1)` gives 5, 4, 3 there and 5, 4, 3, 2, 1 here).

Axis types are given by label or, as A1111's API clients send them, by index into A1111's (1.10) list of axis
types for the tab (`A1111_AXIS_TYPES`: txt2img and img2img lists differ); an index naming an A1111 axis this
program does not have is refused with its label.

Other extensions add axes through the extension API (`PlotAxis`, API 1.5): they are listed after these (an axis
whose label is taken is left out) and chosen by label.

The Hires axes (txt2img: "Hires steps", "Hires sampler", "Hires upscaler") set the Hires. fix fields and change
nothing unless Hires. fix is on, as in A1111; "Denoising" is the img2img strength, and in txt2img the second pass's.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from modules.extensions.api import GenerationRequest, PlotAxis, RunContext, UserError

_INT = r"[+-]?\s*\d+"
_FLOAT = r"[+-]?\s*\d+(?:\.\d*)?"
_RANGE_STEP = re.compile(rf"\s*({_INT})\s*-\s*({_INT})(?:\s*\(\s*([+-]\s*\d+)\s*\))?\s*")
_RANGE_COUNT = re.compile(rf"\s*({_INT})\s*-\s*({_INT})\s*\[\s*(\d+)\s*\]\s*")
_FRANGE_STEP = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})(?:\s*\(\s*([+-]\s*\d+(?:\.\d*)?)\s*\))?\s*")
_FRANGE_COUNT = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})\s*\[\s*(\d+)\s*\]\s*")


class AxisError(UserError):
    """Bad axis values (the message names the axis and the value)."""

    http_status = 422


def split_values(text: str) -> list[str]:
    """CSV-style split with quotes; items trimmed, empty items dropped."""
    rows = csv.reader(io.StringIO(text), skipinitialspace=True)
    return [item.strip() for row in rows for item in row if item.strip()]


def _num(text: str) -> str:
    return text.replace(" ", "")


def _linspace(start: float, end: float, count: int) -> list[float]:
    if count <= 1:
        return [start]
    return [start + (end - start) * i / (count - 1) for i in range(count)]


def _int_range(start: int, end: int, step: int) -> list[int]:
    if step == 0:
        raise ValueError("a range step cannot be 0")
    return list(range(start, end + (1 if step > 0 else -1), step))


def _float_range(start: float, end: float, step: float) -> list[float]:
    if step == 0:
        raise ValueError("a range step cannot be 0")
    count = int((end - start) / step + 1e-9) + 1
    return [round(start + i * step, 10) for i in range(max(0, count))]


def expand_ints(items: Sequence[str]) -> list[int]:
    values: list[int] = []
    for item in items:
        if (m := _RANGE_COUNT.fullmatch(item)) is not None:
            values += [int(v) for v in _linspace(int(_num(m[1])), int(_num(m[2])), int(m[3]))]
        elif (m := _RANGE_STEP.fullmatch(item)) is not None:
            values += _int_range(int(_num(m[1])), int(_num(m[2])), int(_num(m[3] or "+1")))
        else:
            values.append(int(item))
    return values


def expand_floats(items: Sequence[str]) -> list[float]:
    values: list[float] = []
    for item in items:
        if (m := _FRANGE_COUNT.fullmatch(item)) is not None:
            values += _linspace(float(_num(m[1])), float(_num(m[2])), int(m[3]))
        elif (m := _FRANGE_STEP.fullmatch(item)) is not None:
            values += _float_range(float(_num(m[1])), float(_num(m[2])), float(_num(m[3] or "+1")))
        else:
            values.append(float(item))
    return values


Apply = Callable[[GenerationRequest, Any, Sequence[Any]], GenerationRequest]
Confirm = Callable[[RunContext, GenerationRequest, list[Any]], list[Any]]


@dataclass(frozen=True)
class Axis:
    """One axis type: how values are parsed (`kind`), applied to a request, validated and labelled.

    `cost` > 0 marks axes that are slow to switch (checkpoints): they become the outermost loop."""

    label: str
    kind: type
    apply: Apply
    confirm: Confirm | None = None
    with_label: bool = True
    cost: float = 0.0
    modes: tuple[str, ...] = ("txt2img", "img2img")
    choices: str | Callable[[], list[str]] | None = None
    """The UiBuilder.choices kind offered in a dropdown ("samplers", "checkpoints"), or an extension axis's list."""

    def parse(self, text: str) -> list[Any]:
        if self.kind is type(None):
            return [None]
        items = split_values(text)
        try:
            values = expand_ints(items) if self.kind is int else expand_floats(items) if self.kind is float \
                else [_bool(item) for item in items] if self.kind is bool else list(items)
        except ValueError as exc:
            raise AxisError(f"{self.label} values {text!r} are not valid: {exc}") from exc
        if not values:
            raise AxisError(f"Enter at least one value for the {self.label} axis.")
        return values

    def format(self, value: Any) -> str:
        if value is None:
            return ""
        shown = round(value, 8) if isinstance(value, float) else value
        return f"{self.label}: {shown}" if self.with_label else str(shown)


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def from_plot_axis(axis: PlotAxis) -> Axis:
    """An extension's axis (API 1.5 `PlotAxis`) as an axis of this plot."""
    def apply(request: GenerationRequest, value: Any, values: Sequence[Any]) -> GenerationRequest:
        return axis.apply(request, value)

    confirm: Confirm | None = None
    if axis.confirm is not None:
        check = axis.confirm

        def confirm(ctx: RunContext, request: GenerationRequest, values: list[Any]) -> list[Any]:
            return list(check(request, values))

    return Axis(axis.label, axis.kind, apply, confirm=confirm, cost=axis.cost, modes=tuple(axis.modes),
                choices=axis.choices)


def _field(name: str) -> Apply:
    return lambda request, value, values: request.with_changes(**{name: value})


def _prompt_sr(request: GenerationRequest, value: Any, values: Sequence[Any]) -> GenerationRequest:
    search = str(values[0])
    return request.with_changes(prompt=request.prompt.replace(search, str(value)),
                                negative_prompt=request.negative_prompt.replace(search, str(value)))


def _confirm_prompt_sr(ctx: RunContext, request: GenerationRequest, values: list[Any]) -> list[Any]:
    search = str(values[0])
    if search not in request.prompt and search not in request.negative_prompt:
        raise AxisError(f"Prompt S/R did not find '{search}' in the prompt or the negative prompt.")
    return values


def _confirm_samplers(ctx: RunContext, request: GenerationRequest, values: list[Any]) -> list[Any]:
    return [ctx.resolve_sampler(str(value)) for value in values]


def _confirm_checkpoints(ctx: RunContext, request: GenerationRequest, values: list[Any]) -> list[Any]:
    return [ctx.resolve_checkpoint(str(value)) for value in values]


SAME_SAMPLER = "Use same sampler"


def _hires_sampler(request: GenerationRequest, value: Any, values: Sequence[Any]) -> GenerationRequest:
    name = str(value)
    return request.with_changes(hr_sampler_name="" if name.lower() == SAME_SAMPLER.lower() else name)


def _confirm_hires_samplers(ctx: RunContext, request: GenerationRequest, values: list[Any]) -> list[Any]:
    return [SAME_SAMPLER if str(value).lower() == SAME_SAMPLER.lower() else ctx.resolve_sampler(str(value))
            for value in values]


def _confirm_hires_upscalers(ctx: RunContext, request: GenerationRequest, values: list[Any]) -> list[Any]:
    """Upscaler names in their canonical spelling; unknown ones are refused (A1111 fails at generation time)."""
    known = {name.lower(): name for name in ctx.choices("hires_upscalers")}
    if not known:  # no upscaler registry to ask (a bare host): the generation checks the names
        return values
    for value in values:
        if str(value).lower() not in known:
            raise AxisError(f"Hires upscaler '{value}' is not available; choose one of: {', '.join(known.values())}.")
    return [known[str(value).lower()] for value in values]


def _override(key: str) -> Apply:
    """The axis value as the job's override of setting `key` (A1111 applies these axes as override settings)."""
    return lambda request, value, values: request.with_changes(overrides={**request.overrides, key: value})


def _within(label: str, low: float, high: float) -> Confirm:
    def confirm(ctx: RunContext, request: GenerationRequest, values: list[Any]) -> list[Any]:
        for value in values:
            if not low <= value <= high:
                raise AxisError(f"{label} values must be from {low:g} to {high:g}; got {value:g}.")
        return values
    return confirm


RNG_SOURCES = ("GPU", "CPU", "NV")


def _confirm_rng(ctx: RunContext, request: GenerationRequest, values: list[Any]) -> list[Any]:
    known = {name.lower(): name for name in RNG_SOURCES}
    for value in values:
        if str(value).lower() not in known:
            raise AxisError(f"RNG source '{value}' is not one of {', '.join(RNG_SOURCES)}.")
    return [known[str(value).lower()] for value in values]


def _setting_axis(label: str, key: str, low: float, high: float) -> Axis:
    return Axis(label, float, _override(key), confirm=_within(label, low, high))


SETTING_AXES: tuple[Axis, ...] = (
    _setting_axis("Negative Guidance minimum sigma", "s_min_uncond", 0.0, 15.0),
    _setting_axis("Sigma Churn", "s_churn", 0.0, 100.0),
    _setting_axis("Sigma min", "s_tmin", 0.0, 10.0),
    _setting_axis("Sigma max", "s_tmax", 0.0, 999.0),
    _setting_axis("Sigma noise", "s_noise", 0.0, 1.1),
    _setting_axis("Skip Early CFG", "skip_early_cond", 0.0, 1.0),
    Axis("Eta", float, _field("eta"), confirm=_within("Eta", 0.0, 1.0)),
    _setting_axis("Initial noise multiplier", "initial_noise_multiplier", 0.0, 1.5),
    _setting_axis("Token merging ratio", "token_merging_ratio", 0.0, 0.9),
    _setting_axis("Token merging ratio high-res", "token_merging_ratio_hr", 0.0, 0.9),
    Axis("Refiner switch at", float, _field("refiner_switch_at"), confirm=_within("Refiner switch at", 0.0, 1.0)),
    Axis("RNG source", str, _override("randn_source"), confirm=_confirm_rng, choices=lambda: list(RNG_SOURCES)),
)
"""A1111's axes over sampler and optimization settings (applied to the job only) and two request fields."""

AXES: tuple[Axis, ...] = (
    Axis("Nothing", type(None), lambda request, value, values: request),
    Axis("Seed", int, _field("seed")),
    Axis("Var. seed", int, _field("subseed")),
    Axis("Var. strength", float, _field("subseed_strength")),
    Axis("Steps", int, _field("steps")),
    Axis("Hires steps", int, _field("hr_second_pass_steps"), modes=("txt2img",)),
    Axis("CFG Scale", float, _field("cfg_scale")),
    Axis("Prompt S/R", str, _prompt_sr, confirm=_confirm_prompt_sr, with_label=False),
    Axis("Sampler", str, _field("sampler"), confirm=_confirm_samplers, with_label=False, choices="samplers"),
    Axis("Hires sampler", str, _hires_sampler, confirm=_confirm_hires_samplers, choices="samplers",
         modes=("txt2img",)),
    Axis("Schedule type", str, _field("schedule")),
    Axis("Checkpoint name", str, _field("checkpoint"), confirm=_confirm_checkpoints, with_label=False, cost=1.0,
         choices="checkpoints"),
    Axis("Denoising", float, _field("denoising_strength")),
    Axis("Hires upscaler", str, _field("hr_upscaler"), confirm=_confirm_hires_upscalers, choices="hires_upscalers",
         modes=("txt2img",)),
    Axis("Clip skip", int, _field("clip_skip")),
    *SETTING_AXES,
)
SEED_AXES = ("Seed", "Var. seed")

_T2I, _I2I = ("txt2img",), ("img2img",)
A1111_AXIS_TYPES: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    (label, modes) for label, modes in (
        ("Nothing", ()), ("Seed", ()), ("Var. seed", ()), ("Var. strength", ()), ("Steps", ()),
        ("Hires steps", _T2I), ("CFG Scale", ()), ("Image CFG Scale", _I2I), ("Prompt S/R", ()), ("Prompt order", ()),
        ("Sampler", _T2I), ("Hires sampler", _T2I), ("Sampler", _I2I), ("Checkpoint name", ()),
        ("Negative Guidance minimum sigma", ()), ("Sigma Churn", ()), ("Sigma min", ()), ("Sigma max", ()),
        ("Sigma noise", ()), ("Schedule type", ()), ("Schedule min sigma", ()), ("Schedule max sigma", ()),
        ("Schedule rho", ()), ("Skip Early CFG", ()), ("Beta schedule alpha", ()), ("Beta schedule beta", ()),
        ("Eta", ()), ("Clip skip", ()), ("Denoising", ()), ("Initial noise multiplier", ()), ("Extra noise", ()),
        ("Hires upscaler", _T2I), ("Cond. Image Mask Weight", _I2I), ("VAE", ()), ("Styles", ()), ("UniPC Order", ()),
        ("Face restore", ()), ("Token merging ratio", ()), ("Token merging ratio high-res", ()),
        ("Always discard next-to-last sigma", ()), ("SGM noise multiplier", ()), ("Refiner checkpoint", ()),
        ("Refiner switch at", ()), ("RNG source", ()), ("FP8 mode", ()), ("Size", ()),
    )
)
"""A1111 1.10's axis types in order; modes () = both tabs. API clients send indexes into the tab's list."""


def axes_for(mode: str, extra: Sequence[PlotAxis] = ()) -> list[Axis]:
    """The axes of a tab: ours, then the extensions' (`extra`) whose label is not taken."""
    found = [axis for axis in AXES if mode in axis.modes]
    taken = {axis.label.lower() for axis in AXES}
    for plot_axis in extra:
        if mode in plot_axis.modes and plot_axis.label.lower() not in taken:
            taken.add(plot_axis.label.lower())
            found.append(from_plot_axis(plot_axis))
    return found


def a1111_labels(mode: str) -> list[str]:
    """A1111's axis type labels of a tab, in A1111's order (index = what its API clients send)."""
    return [label for label, modes in A1111_AXIS_TYPES if not modes or mode in modes]


def _from_a1111_index(index: int, mode: str, available: list[Axis]) -> Axis:
    labels = a1111_labels(mode)
    if not 0 <= index < len(labels):
        raise AxisError(f"X/Y/Z axis type {index} is out of range: A1111 has {len(labels)} axis types for {mode}.")
    for axis in available:
        if axis.label == labels[index]:
            return axis
    raise AxisError(f"X/Y/Z axis type {index} ('{labels[index]}') is not available for {mode} here; choose one "
                    f"of: {', '.join(a.label for a in available)}.")


def find_axis(choice: Any, mode: str, extra: Sequence[PlotAxis] = ()) -> Axis:
    """An axis by label (case-insensitive) or by A1111 index (an int or a string of digits; see the module doc);
    `extra` are the extensions' axes."""
    available = axes_for(mode, extra)
    if isinstance(choice, int) and not isinstance(choice, bool):
        return _from_a1111_index(choice, mode, available)
    wanted = str(choice or "Nothing").strip().lower()
    if wanted.isdigit():
        return _from_a1111_index(int(wanted), mode, available)
    for axis in available:
        if axis.label.lower() == wanted:
            return axis
    raise AxisError(f"Unknown X/Y/Z axis type {choice!r}; choose one of: {', '.join(a.label for a in available)}.")
