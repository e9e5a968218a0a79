"""Named UI values <-> `GenerationRequest` fields, in both directions.

Every input widget of a generation tab is registered under a *name* (``"steps"``, ``"batch_count"``, ...). A
handler receives a ``{name: value}`` mapping (see `named_values`) and `request_from_values` turns it into a
request; `values_from_request` goes the other way (infotext paste, "send to" buttons). The table `BINDINGS` is
the single place that knows which widget feeds which request field and how its value is converted, so no
handler ever slices positional ``*args`` (the A1111 pattern this replaces).

Widget-only names that have no request field of their own (the "Extra" seed checkbox) are handled here too, so
the round trip ``values -> request -> values`` is exact.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from modules.errors import InvalidRequest
from modules.infotext import PASTED_SETTINGS, setting_overrides
from modules.types import GenerationRequest, InpaintFill, ResizeMode

RESIZE_MODE_LABELS: tuple[str, ...] = ("Just resize", "Crop and resize", "Resize and fill")
MASK_MODE_LABELS: tuple[str, ...] = ("Inpaint masked", "Inpaint not masked")
MASKED_CONTENT_LABELS: tuple[str, ...] = ("fill", "original", "latent noise", "latent nothing")
INPAINT_AREA_LABELS: tuple[str, ...] = ("Whole picture", "Only masked")

SAME_SAMPLER, SAME_SCHEDULER, SAME_CHECKPOINT = "Use same sampler", "Use same scheduler", "Use same checkpoint"
"""Hires fix's dropdown entries for "the first pass's" (an empty request field)."""

SEED_EXTRA = "seed_extra"
"""Name of the "Extra" checkbox: when off, variation seed and seed resize are ignored (A1111 behaviour)."""

_SEED_EXTRA_FIELDS = {"subseed": -1, "subseed_strength": 0.0, "seed_resize_from_w": 0, "seed_resize_from_h": 0}


def _identity(value: Any) -> Any:
    return value


def _to_int(value: Any) -> int:
    if value is None or value == "":
        raise InvalidRequest("A number field is empty; enter a whole number.")
    return int(round(float(value)))


def _to_seed(value: Any) -> int:
    """Seeds: an empty box means random (-1), as in A1111."""
    if value is None or value == "":
        return -1
    return int(float(value))


def _to_float(value: Any) -> float:
    if value is None or value == "":
        raise InvalidRequest("A number field is empty; enter a number.")
    return float(value)


def _label_to_index(labels: tuple[str, ...], what: str) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, int):
            return value
        try:
            return labels.index(str(value))
        except ValueError:
            raise InvalidRequest(f"Unknown {what} {value!r}; expected one of: {', '.join(labels)}.") from None

    return convert


def _index_to_label(labels: tuple[str, ...]) -> Callable[[Any], str]:
    return lambda value: labels[int(value)]


def _optional_name(value: Any) -> str | None:
    """Dropdown value -> request name; an empty selection means "the current one"."""
    return str(value) if value not in (None, "") else None


def _same_to_empty(keyword: str) -> Callable[[Any], str]:
    return lambda value: "" if value in (None, "", keyword) else str(value)


def _empty_to_same(keyword: str) -> Callable[[Any], str]:
    return lambda value: value or keyword


@dataclass(frozen=True)
class Binding:
    """One widget name, the request field it feeds, and the conversions between widget and field values."""

    name: str
    field: str
    to_request: Callable[[Any], Any] = _identity
    from_request: Callable[[Any], Any] = _identity


def _overrides_to_request(entries: Any) -> dict[str, Any]:
    """The "Override settings" entries ("RNG: NV", ...) as request overrides {option key: value}."""
    params = {}
    for entry in entries or ():
        label, _, value = str(entry).partition(": ")
        params[label.strip()] = value.strip()
    unknown = sorted(set(params) - set(PASTED_SETTINGS))
    if unknown:
        raise InvalidRequest(f"Override settings: {', '.join(unknown)} cannot be overridden here; remove it.")
    return setting_overrides(params)


def _overrides_from_request(overrides: Mapping[str, Any]) -> list[str]:
    labels = {key: label for label, key in PASTED_SETTINGS.items()}
    return [f"{labels[key]}: {value}" for key, value in overrides.items() if key in labels]


BINDINGS: tuple[Binding, ...] = (
    Binding("prompt", "prompt", lambda v: v or "", _identity),
    Binding("negative_prompt", "negative_prompt", lambda v: v or "", _identity),
    Binding("styles", "styles", lambda v: tuple(v or ()), list),
    Binding("sampler", "sampler", str, _identity),
    Binding("schedule", "schedule", str, _identity),
    Binding("steps", "steps", _to_int, _identity),
    Binding("width", "width", _to_int, _identity),
    Binding("height", "height", _to_int, _identity),
    Binding("batch_count", "n_iter", _to_int, _identity),
    Binding("batch_size", "batch_size", _to_int, _identity),
    Binding("cfg_scale", "cfg_scale", _to_float, _identity),
    Binding("seed", "seed", _to_seed, _identity),
    Binding("subseed", "subseed", _to_seed, _identity),
    Binding("subseed_strength", "subseed_strength", _to_float, _identity),
    Binding("seed_resize_from_w", "seed_resize_from_w", _to_int, _identity),
    Binding("seed_resize_from_h", "seed_resize_from_h", _to_int, _identity),
    Binding("checkpoint", "checkpoint", _optional_name, _identity),
    Binding("vae", "vae", _optional_name, _identity),
    Binding("clip_skip", "clip_skip", _to_int, _identity),
    Binding("denoising_strength", "denoising_strength", _to_float, _identity),
    Binding("resize_mode", "resize_mode",
            lambda v: ResizeMode(_label_to_index(RESIZE_MODE_LABELS, "resize mode")(v)),
            _index_to_label(RESIZE_MODE_LABELS)),
    Binding("mask_blur", "mask_blur", _to_int, _identity),
    Binding("mask_mode", "invert_mask",
            lambda v: bool(_label_to_index(MASK_MODE_LABELS, "mask mode")(v)),
            _index_to_label(MASK_MODE_LABELS)),
    Binding("inpainting_fill", "inpainting_fill",
            lambda v: InpaintFill(_label_to_index(MASKED_CONTENT_LABELS, "masked content")(v)),
            _index_to_label(MASKED_CONTENT_LABELS)),
    Binding("inpaint_area", "inpaint_full_res",
            lambda v: bool(_label_to_index(INPAINT_AREA_LABELS, "inpaint area")(v)),
            _index_to_label(INPAINT_AREA_LABELS)),
    Binding("inpaint_padding", "inpaint_full_res_padding", _to_int, _identity),
    Binding("enable_hr", "enable_hr", bool, _identity),
    Binding("hr_upscaler", "hr_upscaler", str, _identity),
    Binding("hr_second_pass_steps", "hr_second_pass_steps", _to_int, _identity),
    Binding("hr_scale", "hr_scale", _to_float, _identity),
    Binding("hr_resize_x", "hr_resize_x", _to_int, _identity),
    Binding("hr_resize_y", "hr_resize_y", _to_int, _identity),
    Binding("hr_sampler", "hr_sampler_name", _same_to_empty(SAME_SAMPLER), _empty_to_same(SAME_SAMPLER)),
    Binding("hr_scheduler", "hr_scheduler", _same_to_empty(SAME_SCHEDULER), _empty_to_same(SAME_SCHEDULER)),
    Binding("hr_checkpoint", "hr_checkpoint_name", _same_to_empty(SAME_CHECKPOINT), _empty_to_same(SAME_CHECKPOINT)),
    Binding("hr_prompt", "hr_prompt", lambda v: v or "", _identity),
    Binding("hr_negative_prompt", "hr_negative_prompt", lambda v: v or "", _identity),
    Binding("override_settings", "overrides", _overrides_to_request, _overrides_from_request),
)

BINDINGS_BY_NAME: dict[str, Binding] = {binding.name: binding for binding in BINDINGS}
BINDINGS_BY_FIELD: dict[str, Binding] = {binding.field: binding for binding in BINDINGS}
BOUND_NAMES: frozenset[str] = frozenset(BINDINGS_BY_NAME) | {SEED_EXTRA}

_REQUEST_FIELDS = frozenset(f.name for f in dataclasses.fields(GenerationRequest))
assert {b.field for b in BINDINGS} <= _REQUEST_FIELDS, "a binding names a field GenerationRequest does not have"


def named_values(components: Mapping[str, Any], data: Mapping[Any, Any]) -> dict[str, Any]:
    """Gradio passes ``{component: value}`` for set-style inputs; re-key it by our widget names."""
    return {name: data[component] for name, component in components.items() if component in data}


def request_from_values(values: Mapping[str, Any], base: GenerationRequest) -> GenerationRequest:
    """Copy of `base` with every bound widget value in `values` converted into its request field.

    Names without a binding (images, sub-tab state) are ignored here; the tab that owns them adds them.
    When the "Extra" seed checkbox is present and off, the variation-seed fields get their neutral values.
    """
    changes: dict[str, Any] = {}
    for name, value in values.items():
        binding = BINDINGS_BY_NAME.get(name)
        if binding is not None:
            changes[binding.field] = binding.to_request(value)
    if SEED_EXTRA in values and not values[SEED_EXTRA]:
        changes.update(_SEED_EXTRA_FIELDS)
    return base.with_changes(**changes)


def values_from_request(request: GenerationRequest, names: Iterable[str]) -> dict[str, Any]:
    """Widget values for `names` taken from `request` (the inverse of `request_from_values`)."""
    values: dict[str, Any] = {}
    for name in names:
        if name == SEED_EXTRA:
            values[name] = request.subseed_strength > 0 or request.seed_resize_from_w > 0 \
                or request.seed_resize_from_h > 0
            continue
        binding = BINDINGS_BY_NAME.get(name)
        if binding is not None:
            values[name] = binding.from_request(getattr(request, binding.field))
    return values


def changed_names(before: GenerationRequest, after: GenerationRequest, names: Iterable[str]) -> list[str]:
    """Names (among `names`) whose request field differs between two requests: what a paste actually changed."""
    changed = []
    for name in names:
        if name == SEED_EXTRA:
            if any(getattr(before, f) != getattr(after, f) for f in _SEED_EXTRA_FIELDS):
                changed.append(name)
            continue
        binding = BINDINGS_BY_NAME.get(name)
        if binding is not None and getattr(before, binding.field) != getattr(after, binding.field):
            changed.append(name)
    return changed
