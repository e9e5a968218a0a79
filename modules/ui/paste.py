"""Infotext -> widget values: the "read generation parameters" button, PNG Info's and the results' "send to".

The infotext is parsed by `modules.infotext.parse`, applied to a request built from the tab's *current* values
(`apply_to_request`), and only the widgets whose request field changed get an update, so a field the infotext
does not state keeps what the user had (A1111 behaviour). Sampler names are normalised through the sampler
registry: a legacy combined name ("DPM++ 2M Karras") becomes sampler "DPM++ 2M" + schedule "Karras"; a sampler
or schedule this program cannot run is left unchanged with a warning instead of breaking the dropdown.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from modules import infotext
from modules.errors import UnknownSampler, UserError
from modules.types import GenerationRequest
from modules.ui.bind import BINDINGS_BY_NAME, SEED_EXTRA, changed_names, values_from_request
from modules.upscalers.registry import UpscalerRegistry

if TYPE_CHECKING:
    from modules.samplers.registry import SamplerRegistry

log = logging.getLogger(__name__)

SEED_NAMES = frozenset({"seed", SEED_EXTRA, "subseed", "subseed_strength", "seed_resize_from_w",
                        "seed_resize_from_h"})
SIZE_NAMES = frozenset({"width", "height"})


@dataclass
class PasteResult:
    """Widget values to set (by binder name) and warnings to show the user."""

    values: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def lenient_request(values: Mapping[str, Any], base: GenerationRequest) -> GenerationRequest:
    """Like `bind.request_from_values`, but a widget holding an unusable value (an emptied number box) is skipped
    instead of failing: a paste must work whatever the fields currently hold."""
    changes: dict[str, Any] = {}
    for name, value in values.items():
        binding = BINDINGS_BY_NAME.get(name)
        if binding is None:
            continue
        try:
            changes[binding.field] = binding.to_request(value)
        except (UserError, ValueError, TypeError):
            continue
    request = base.with_changes(**changes)
    if SEED_EXTRA in values and not values[SEED_EXTRA]:
        request = request.with_changes(subseed=-1, subseed_strength=0.0, seed_resize_from_w=0, seed_resize_from_h=0)
    return request


def normalise_sampler(registry: "SamplerRegistry", request: GenerationRequest,
                      fallback: GenerationRequest) -> tuple[GenerationRequest, list[str]]:
    """Canonical sampler/schedule labels for the dropdowns, and warnings for names that cannot be used (those
    keep `fallback`'s sampler and schedule)."""
    keep = request.with_changes(sampler=fallback.sampler, schedule=fallback.schedule)
    try:
        spec = registry.sampler(request.sampler)
    except UnknownSampler:
        return keep, [f"Sampler '{request.sampler}' from the parameters is unknown; the sampler was not changed."]
    if not spec.supported:
        return keep, [f"Sampler '{request.sampler}' cannot run here; the sampler was not changed."]
    schedule = request.schedule
    if spec.name != request.sampler and schedule == "Automatic":
        schedule = _schedule_in_name(registry, request.sampler, spec.name)
    warnings = []
    if schedule not in registry.schedules_for(spec.name):
        warnings.append(f"Schedule type '{schedule}' is not available for {spec.name}; 'Automatic' is used.")
        schedule = "Automatic"
    return request.with_changes(sampler=spec.name, schedule=schedule), warnings


def normalise_hires(registry: "SamplerRegistry", request: GenerationRequest, fallback: GenerationRequest,
                    upscalers: UpscalerRegistry | None = None,
                    checkpoints: "Callable[[str], str | None] | None" = None) -> tuple[GenerationRequest, list[str]]:
    """Hires upscaler, checkpoint, sampler and schedule as the accordion's dropdowns spell them; a name that cannot
    be used here (`upscalers`: the model files too; None: built-ins only; `checkpoints`: a checkpoint name -> the
    dropdown's title or None) keeps `fallback`'s value, with a warning."""
    changes: dict[str, Any] = {}
    warnings: list[str] = []
    if request.hr_checkpoint_name and checkpoints is not None:
        title = checkpoints(request.hr_checkpoint_name)
        if title is None:
            changes["hr_checkpoint_name"] = fallback.hr_checkpoint_name
            warnings.append(f"Hires checkpoint '{request.hr_checkpoint_name}' is not in the checkpoint folders; it was "
                            "not changed.")
        else:
            changes["hr_checkpoint_name"] = title
    try:
        changes["hr_upscaler"] = (upscalers or UpscalerRegistry()).find(request.hr_upscaler).name
    except UserError:
        changes["hr_upscaler"] = fallback.hr_upscaler
        warnings.append(f"Hires upscaler '{request.hr_upscaler}' is not available here; it was not changed.")
    if request.hr_sampler_name:
        try:
            spec = registry.sampler(request.hr_sampler_name)
            if not spec.supported:
                raise UnknownSampler(spec.name)
            changes["hr_sampler_name"] = spec.name
        except UnknownSampler:
            changes["hr_sampler_name"] = fallback.hr_sampler_name
            warnings.append(f"Hires sampler '{request.hr_sampler_name}' cannot run here; it was not changed.")
    if request.hr_scheduler and request.hr_scheduler not in registry.schedule_labels():
        changes["hr_scheduler"] = fallback.hr_scheduler
        warnings.append(f"Hires schedule type '{request.hr_scheduler}' is not available; it was not changed.")
    return request.with_changes(**changes), warnings


def _schedule_in_name(registry: "SamplerRegistry", written: str, canonical: str) -> str:
    """The schedule a combined name carries ("DPM++ 2M Karras" -> "Karras", "k_dpmpp_2m_ka" -> "Karras"),
    else "Automatic"."""
    suffix = written[len(canonical):].strip().lower() if written.lower().startswith(canonical.lower()) else ""
    for label in registry.schedule_labels():
        if suffix and suffix == label.lower():
            return label
    try:
        from_name = registry.resolve(written).schedule_label
        default = registry.resolve(canonical).schedule_label
    except UnknownSampler:
        return "Automatic"
    return from_name if from_name != default else "Automatic"


def values_from_infotext(registry: "SamplerRegistry", text: str, current: Mapping[str, Any], *,
                         send_seed: bool = True, send_size: bool = True,
                         upscalers: UpscalerRegistry | None = None,
                         checkpoints: Callable[[str], str | None] | None = None) -> PasteResult:
    """Widget values that an infotext changes among the names in `current` (a tab's named widget values).

    `send_seed`/`send_size` are A1111's options for the "send to" buttons: when off, seeds or size stay as they are.
    """
    parsed = infotext.parse(text or "")
    base = lenient_request(current, GenerationRequest())
    pasted = infotext.apply_to_request(parsed, base)
    pasted, warnings = normalise_sampler(registry, pasted, base)
    if "enable_hr" in current:
        pasted, hires_warnings = normalise_hires(registry, pasted, base, upscalers, checkpoints)
        warnings += hires_warnings
    names = _allowed_names(current, send_seed, send_size)
    changed = changed_names(base, pasted, names)
    return PasteResult(values_from_request(pasted, changed), warnings)


def _allowed_names(current: Iterable[str], send_seed: bool, send_size: bool) -> list[str]:
    blocked: set[str] = set()
    if not send_seed:
        blocked |= SEED_NAMES
    if not send_size:
        blocked |= SIZE_NAMES
    return [name for name in current if name not in blocked]


def has_parameters(text: str | None) -> bool:
    """True when `text` ends with an A1111 parameter line (so it is an infotext, not just a prompt)."""
    return text is not None and bool(text) and bool(infotext.parse(text).params)
