"""AUTOMATIC1111 "infotext": the generation-parameters text stored in PNG `parameters` chunks. Pure: no torch, no I/O.

Format (A1111 `processing.create_infotext`, read back by `infotext_utils.parse_generation_parameters`)::

    <prompt, possibly several lines>
    Negative prompt: <negative prompt, possibly several lines>      (line omitted when the negative is empty)
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x768, ...

The last line holds `Key: value` pairs joined by ", ". A value containing a comma, colon, quote or line break is
written as a JSON string; a value equal to its key is written as the bare key; `None` values are left out.
Parsing is A1111's: the last line is the parameter line only if the pair pattern matches it at least three times;
`Negative prompt:` starts the negative prompt; quoted values are unquoted; empty values are dropped.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Mapping

from modules.types import GenerationRequest, InpaintFill

logger = logging.getLogger(__name__)

NEGATIVE_PREFIX = "Negative prompt:"

# One `Key: value` pair, the same language as A1111's `re_param`: a key starts with a word character and continues
# with word characters, spaces, '-' or '/'; a value is a JSON-style quoted string or anything up to the next comma.
_PARAM_RE = re.compile(
    r"""\s*(\w[\w \-/]+):\s*          # key, colon
        ("(?:\\.|[^\\"])+"|[^,]*)     # quoted value (escapes allowed) or plain value
        (?:,|$)                       # separator or end of line
    """,
    re.VERBOSE,
)
_KEY_RE = re.compile(r"\w[\w \-/]+")
_SIZE_RE = re.compile(r"^(\d+)x(\d+)$")
_QUOTE_TRIGGERS = (",", ":", "\n", "\r", '"')

# Values A1111's parser assumes for keys that a generator leaves out because they hold the default (only those that
# change a request; the hires-fix defaults are applied by `apply_to_request`; RNG and VAE-method ones do not apply).
A1111_DEFAULTS: Mapping[str, str] = {
    "Clip skip": "1",
    "Schedule type": "Automatic",
    "Mask mode": "Inpaint masked",
    "Masked content": "original",
    "Inpaint area": "Whole picture",
    "Masked area padding": "32",
}

PASTED_SETTINGS: Mapping[str, str] = {
    "RNG": "randn_source",
    "ENSD": "eta_noise_seed_delta",
    "Emphasis": "emphasis",
    "Noise multiplier": "initial_noise_multiplier",
    "Sigma churn": "s_churn",
    "Sigma tmin": "s_tmin",
    "Sigma tmax": "s_tmax",
    "Sigma noise": "s_noise",
    "NGMS": "s_min_uncond",
    "NGMS all steps": "s_min_uncond_all",
    "Skip Early CFG": "skip_early_cond",
    "Token merging ratio": "token_merging_ratio",
    "Token merging ratio hr": "token_merging_ratio_hr",
    "Tiling": "tiling",
}
"""Infotext keys of *settings* (not request fields) that a paste applies to the job as overrides, A1111's "Override
settings": the noise source, the eta noise seed delta, the emphasis mode, img2img's noise multiplier, the sigma
churn settings, the settings that skip the negative prompt on some steps, the token merging ratios and Tiling.
("Eta" and "Eta DDIM" fill the request's eta, which wins over either eta setting, as in A1111.)"""


def setting_overrides(params: Mapping[str, str]) -> dict[str, Any]:
    """{option key: value} of the `PASTED_SETTINGS` among infotext `params`, checked against the options table (a
    value the option does not accept is left out, as malformed numbers are)."""
    from modules.options import OptionValueError, default_table

    stated = {label: params[label] for label in PASTED_SETTINGS if label in params}
    if not stated:  # the usual case (every generation from the UI passes its empty override list here)
        return {}
    table = default_table()
    overrides: dict[str, Any] = {}
    for label, text in stated.items():
        key = PASTED_SETTINGS[label]
        spec = table[key]
        try:
            value: Any = (int(float(text)) if spec.kind == "int" else float(text) if spec.kind == "float"
                          else {"true": True, "false": False}.get(text.lower(), text) if spec.kind == "bool" else text)
            overrides[key] = spec.validate(value)
        except (OptionValueError, ValueError):
            logger.debug("infotext %s: %r is not a value of %s; skipped", label, text, key)
    return overrides


# A1111 "Masked content" labels (only fill 1, "original", is left out of infotexts: it is the default).
_MASKED_CONTENT = {
    InpaintFill.FILL: "fill",
    InpaintFill.ORIGINAL: "original",
    InpaintFill.LATENT_NOISE: "latent noise",
    InpaintFill.LATENT_NOTHING: "latent nothing",
}


@dataclass(frozen=True)
class HiresLabels:
    """What a hires-fix job ran its second pass with: sampler and schedule labels, the upscaler's name, and the
    checkpoint's short title when it was not the first pass's (`hr_checkpoint_name`)."""

    sampler: str
    schedule: str
    upscaler: str
    checkpoint: str | None = None


@dataclass(frozen=True)
class ParsedInfotext:
    """An infotext split into prompt, negative prompt and parameters.

    `params` holds every pair of the parameter line in order, unquoted, values as text. A size-like value
    (`Size: 512x768`) is kept and also split, A1111 style, into `Size-1` = "512" and `Size-2` = "768" right after
    it. Defaults that A1111's parser adds for missing keys are *not* inserted (so that `to_text()` reproduces the
    original); `get()` answers with them.
    """

    prompt: str
    negative_prompt: str
    params: dict[str, str]

    def get(self, key: str) -> str | None:
        """The value of `key`, or A1111's assumed default when the infotext leaves it out, or None."""
        if key in self.params:
            return self.params[key]
        return A1111_DEFAULTS.get(key)

    def written_params(self) -> dict[str, str]:
        """`params` without the derived `<key>-1`/`<key>-2` entries of size-like values."""
        return {key: value for key, value in self.params.items() if not self._is_derived(key)}

    def to_text(self) -> str:
        """The infotext again (equal to the parsed text for anything `build()` writes)."""
        return build(self.prompt, self.negative_prompt, self.written_params())

    def _is_derived(self, key: str) -> bool:
        base, dash, index = key[:-2], key[-2:-1], key[-1:]
        if dash != "-" or index not in ("1", "2") or base not in self.params:
            return False
        return _SIZE_RE.match(self.params[base]) is not None


def quote(value: Any) -> str:
    """A parameter value as written on the parameter line (JSON string when it would break the line)."""
    text = str(value)
    if any(trigger in text for trigger in _QUOTE_TRIGGERS):
        return json.dumps(text, ensure_ascii=False)
    return text


def unquote(text: str) -> str:
    """Inverse of `quote`: a `"..."` value is decoded as JSON; anything else (or bad JSON) is returned as is."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        decoded = json.loads(text)
    except ValueError:
        return text
    return decoded if isinstance(decoded, str) else text


def build(prompt: str, negative_prompt: str, params: Mapping[str, Any]) -> str:
    """Format an infotext exactly as A1111's `create_infotext` does (see the module docstring)."""
    pairs = []
    for key, value in params.items():
        if value is None:
            continue
        if _KEY_RE.fullmatch(key) is None:
            logger.warning("Infotext key %r cannot be read back by A1111's parser (allowed: letters, digits, "
                           "'_', ' ', '-', '/')", key)
        pairs.append(key if isinstance(value, str) and value == key else f"{key}: {quote(value)}")
    negative_line = f"\n{NEGATIVE_PREFIX} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative_line}\n{', '.join(pairs)}".strip()


def parse(text: str) -> ParsedInfotext:
    """Split an infotext into prompt, negative prompt and parameters (A1111 `parse_generation_parameters`)."""
    *lines, last_line = text.strip().split("\n")
    if len(_PARAM_RE.findall(last_line)) < 3:
        lines.append(last_line)
        last_line = ""

    prompt = negative = ""
    in_negative = False
    for raw_line in lines:
        line = raw_line.strip()
        if line.startswith(NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(NEGATIVE_PREFIX):].strip()
        if in_negative:
            negative = _append_line(negative, line)
        else:
            prompt = _append_line(prompt, line)
    return ParsedInfotext(prompt=prompt, negative_prompt=negative, params=_parse_params(last_line))


def _append_line(accumulated: str, line: str) -> str:
    # A1111 joins with "\n" except onto an empty accumulator, so leading empty lines vanish.
    return line if accumulated == "" else f"{accumulated}\n{line}"


def _parse_params(line: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, raw_value in _PARAM_RE.findall(line):
        if raw_value == "":
            continue
        value = unquote(raw_value)
        params[key] = value
        size = _SIZE_RE.match(value)
        if size is not None:
            params[f"{key}-1"] = size.group(1)
            params[f"{key}-2"] = size.group(2)
    return params


def _number(value: float) -> int | float:
    """Integral floats print as integers ("CFG scale: 7"), as A1111's UI sliders produce them."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def request_params(
    request: GenerationRequest,
    *,
    seed: int,
    subseed: int,
    model_name: str | None,
    model_hash: str | None,
    sampler_label: str,
    schedule_label: str | None,
    sampler_params: Mapping[str, Any] | None = None,
    vae_name: str | None = None,
    vae_hash: str | None = None,
    extra: Mapping[str, Any] | None = None,
    rng: str | None = None,
    ensd: int | None = None,
    conditional_mask_weight: float | None = None,
    version: str | None = None,
    hires: HiresLabels | None = None,
) -> dict[str, Any]:
    """The ordered parameters A1111 1.10 writes for one image of `request` (pass the result to `build`).

    `seed`/`subseed` are the resolved per-image seeds. `sampler_params` are the sampler settings A1111 records
    ("Eta DDIM", "Eta", "Sigma churn", ...: `Tuning.infotext`, only those that differ from the sampler's
    defaults). `rng` is A1111's "RNG" ("CPU" or "NV"; None
    for A1111's default GPU source). `ensd` is the eta noise seed delta, given when it is not 0 and the sampler
    draws per-step noise (A1111's "uses_ensd" samplers). `conditional_mask_weight` is given for models with
    inpainting conditioning. `hires` is given for a hires-fix job. `extra` (extension parameters such as "Lora
    hashes") follows the built-in keys, as A1111's `extra_generation_params` do; a key already present keeps its
    place and takes the new value.
    Integral floats are written as integers.
    """
    params: dict[str, Any] = {
        "Steps": request.steps,
        "Sampler": sampler_label,
        "Schedule type": schedule_label,
        "CFG scale": _number(request.cfg_scale),
        "Seed": seed,
        "Size": f"{request.width}x{request.height}",
        "Model hash": model_hash,
        "Model": model_name,
        "VAE hash": vae_hash,
        "VAE": vae_name,
    }
    if request.subseed_strength != 0:
        params["Variation seed"] = subseed
        params["Variation seed strength"] = _number(request.subseed_strength)
    if request.seed_resize_from_w > 0 and request.seed_resize_from_h > 0:
        params["Seed resize from"] = f"{request.seed_resize_from_w}x{request.seed_resize_from_h}"
    if request.mode in ("img2img", "inpaint") or hires is not None:
        params["Denoising strength"] = _number(request.denoising_strength)
    if conditional_mask_weight is not None:
        params["Conditional mask weight"] = _number(conditional_mask_weight)
    if request.clip_skip > 1:
        params["Clip skip"] = request.clip_skip
    params["ENSD"] = ensd
    params["RNG"] = rng
    if request.mode == "inpaint":
        params.update(_inpaint_params(request))
    if hires is not None:
        params.update(_hires_params(request, sampler_label, schedule_label, hires))
    params.update(extra or {})
    params.update({key: _number(value) for key, value in (sampler_params or {}).items()})
    params["Version"] = version
    return {key: value for key, value in params.items() if value is not None}


def _hires_params(request: GenerationRequest, sampler_label: str, schedule_label: str | None,
                  hires: HiresLabels) -> dict[str, Any]:
    """The hires-fix parameters in A1111's order; sampler, schedule and prompts only where they differ."""
    params: dict[str, Any] = {}
    if hires.checkpoint:
        params["Hires checkpoint"] = hires.checkpoint
    if request.hr_sampler_name and hires.sampler != sampler_label:
        params["Hires sampler"] = hires.sampler
    if hires.schedule != schedule_label:
        params["Hires schedule type"] = hires.schedule
    if request.hr_prompt and request.hr_prompt != request.prompt:
        params["Hires prompt"] = request.hr_prompt
    if request.hr_negative_prompt and request.hr_negative_prompt != request.negative_prompt:
        params["Hires negative prompt"] = request.hr_negative_prompt
    if request.hr_resize_x == 0 and request.hr_resize_y == 0:
        params["Hires upscale"] = _number(request.hr_scale)
    else:
        params["Hires resize"] = f"{request.hr_resize_x}x{request.hr_resize_y}"
    if request.hr_second_pass_steps:
        params["Hires steps"] = request.hr_second_pass_steps
    params["Hires upscaler"] = hires.upscaler
    return params


def _inpaint_params(request: GenerationRequest) -> dict[str, Any]:
    """The mask parameters A1111's img2img `init()` records, in its order; defaults are left out."""
    params: dict[str, Any] = {}
    if request.invert_mask:
        params["Mask mode"] = "Inpaint not masked"
    if request.mask_blur > 0:
        params["Mask blur"] = request.mask_blur
    if request.inpaint_full_res:
        params["Inpaint area"] = "Only masked"
        params["Masked area padding"] = request.inpaint_full_res_padding
    if request.inpainting_fill != InpaintFill.ORIGINAL:
        params["Masked content"] = _MASKED_CONTENT[InpaintFill(request.inpainting_fill)]
    return params


def to_int(text: str | None) -> int | None:
    """An infotext value as an integer ("20", "20.0"), or None when it is missing or not a whole number."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        number = to_float(text)
        return int(number) if number is not None and number.is_integer() else None


def to_float(text: str | None) -> float | None:
    """An infotext value as a finite number, or None when it is missing or not one."""
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def apply_to_request(parsed: ParsedInfotext, base: GenerationRequest) -> GenerationRequest:
    """`base` with the fields an infotext states replaced ("PNG Info -> send to txt2img", "read parameters").

    Mapped: prompt, negative prompt, steps, sampler (label kept as written, e.g. a legacy "DPM++ 2M Karras"; the
    sampler registry resolves it), schedule type, CFG scale, seed, size, denoising strength, clip skip, variation
    seed/strength, seed resize from, eta, mask blur, mask mode, masked content, inpaint area and padding, and the
    hires-fix fields (enabled, as in A1111, when `Denoising strength` and an upscale, upscaler or resize are
    stated; a hires key left out means its default: resize 0, same sampler/schedule/prompts, steps 0).
    A key the infotext leaves out keeps `base`'s value, except where leaving it out means a default: the A1111
    defaults in `A1111_DEFAULTS` (clip skip 1, schedule "Automatic", mask options), variation strength 0, no seed
    resize and no eta (A1111 writes each of these whenever it is not the default). Model and VAE are not switched
    (A1111's default `disable_weights_auto_swap`). The settings of `PASTED_SETTINGS` (RNG, ENSD, ...) become the
    request's `overrides` (replacing earlier pasted ones), as A1111's "Override settings". Unknown keys are ignored
    and malformed numbers skipped.
    """
    changes: dict[str, Any] = {"prompt": parsed.prompt, "negative_prompt": parsed.negative_prompt}
    _put(changes, "steps", to_int(parsed.get("Steps")))
    _put(changes, "sampler", parsed.get("Sampler"))
    _put(changes, "schedule", parsed.get("Schedule type"))
    _put(changes, "cfg_scale", to_float(parsed.get("CFG scale")))
    width, height = to_int(parsed.get("Size-1")), to_int(parsed.get("Size-2"))
    if width is not None and height is not None:
        changes["width"], changes["height"] = width, height
    _put(changes, "denoising_strength", to_float(parsed.get("Denoising strength")))
    _put(changes, "clip_skip", to_int(parsed.get("Clip skip")))
    eta_key = next((key for key in ("Eta DDIM", "Eta") if key in parsed.params), None)  # "Eta": older files here
    if eta_key is not None:
        _put(changes, "eta", to_float(parsed.params[eta_key]))
    else:
        changes["eta"] = None
    changes.update(_seed_changes(parsed))
    changes.update(_mask_changes(parsed))
    changes.update(_hires_changes(parsed))
    kept = {key: value for key, value in base.overrides.items() if key not in PASTED_SETTINGS.values()}
    changes["overrides"] = {**kept, **setting_overrides(parsed.params)}
    return base.with_changes(**changes)


def _hires_changes(parsed: ParsedInfotext) -> dict[str, Any]:
    params = parsed.params
    enabled = "Denoising strength" in params and any(
        key in params for key in ("Hires upscale", "Hires upscaler", "Hires resize"))
    changes: dict[str, Any] = {"enable_hr": enabled}
    _put(changes, "hr_scale", to_float(params.get("Hires upscale")))
    _put(changes, "hr_upscaler", params.get("Hires upscaler"))
    resize_x, resize_y = to_int(params.get("Hires resize-1")), to_int(params.get("Hires resize-2"))
    changes["hr_resize_x"], changes["hr_resize_y"] = (resize_x or 0, resize_y or 0)
    changes["hr_second_pass_steps"] = to_int(params.get("Hires steps")) or 0
    changes["hr_sampler_name"] = params.get("Hires sampler", "")
    changes["hr_scheduler"] = params.get("Hires schedule type", "")
    changes["hr_prompt"] = params.get("Hires prompt", "")
    changes["hr_negative_prompt"] = params.get("Hires negative prompt", "")
    changes["hr_checkpoint_name"] = params.get("Hires checkpoint", "")
    return changes


def _seed_changes(parsed: ParsedInfotext) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    _put(changes, "seed", to_int(parsed.get("Seed")))
    _put(changes, "subseed", to_int(parsed.get("Variation seed")))
    _put(changes, "subseed_strength", to_float(parsed.get("Variation seed strength") or "0"))
    if "Seed resize from" not in parsed.params:
        changes["seed_resize_from_w"] = changes["seed_resize_from_h"] = 0
        return changes
    resize_w, resize_h = to_int(parsed.get("Seed resize from-1")), to_int(parsed.get("Seed resize from-2"))
    if resize_w is not None and resize_h is not None:
        changes["seed_resize_from_w"], changes["seed_resize_from_h"] = resize_w, resize_h
    return changes


def _mask_changes(parsed: ParsedInfotext) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    _put(changes, "mask_blur", to_int(parsed.get("Mask blur")))
    mask_mode = parsed.get("Mask mode")
    if mask_mode in ("Inpaint masked", "Inpaint not masked"):
        changes["invert_mask"] = mask_mode == "Inpaint not masked"
    fills = {label: fill for fill, label in _MASKED_CONTENT.items()}
    _put(changes, "inpainting_fill", fills.get(parsed.get("Masked content") or ""))
    area = parsed.get("Inpaint area")
    if area in ("Whole picture", "Only masked"):
        changes["inpaint_full_res"] = area == "Only masked"
    _put(changes, "inpaint_full_res_padding", to_int(parsed.get("Masked area padding")))
    return changes


def _put(changes: dict[str, Any], field_name: str, value: Any) -> None:
    if value is not None:
        changes[field_name] = value
