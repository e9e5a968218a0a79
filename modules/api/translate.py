"""A1111 API request bodies -> `GenerationRequest`, plus the API-only switches (send/save images, task id).

`build_job(body, app, mode)` is the one entry point for txt2img, img2img and the job API. Rules:
- a field asking for a feature this program does not have (`restore_faces`, ...) is refused
  with a 422 naming it (`refuse_unsupported`); fields that would change nothing here are accepted and ignored;
- txt2img's hires-fix fields count only with `enable_hr`; its upscaler and sampler are checked before queueing;
- `override_settings` go into `request.overrides` for this job only (validated against the option table);
  `sd_model_checkpoint`, `sd_vae` and `CLIP_stop_at_last_layers` there also select checkpoint, VAE and clip skip;
- `infotext` fills every field the body does not set, and the settings it states (RNG, ENSD, ...) that
  `override_settings` does not name; scripts (`script_name`, `script_args`,
  `alwayson_scripts`) become `request.extension_args` through the extension host.
Range checks are the generation core's (`modules.core.validate`). The field-by-field status is in docs/compat.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from PIL import Image
from pydantic import BaseModel

from modules import infotext
from modules.api.codec import decode_image
from modules.api.schemas import GenerationFields, HiresFields, InitImageFields
from modules.errors import Forbidden, InvalidRequest
from modules.types import GenerationRequest, InpaintFill, ResizeMode

if TYPE_CHECKING:
    from modules.app import App

CHECKPOINT_KEY = "sd_model_checkpoint"
VAE_KEY = "sd_vae"
CLIP_SKIP_KEY = "CLIP_stop_at_last_layers"
_VAE_KEYWORDS = ("Automatic", "None")
_SAME_MODEL = (None, "", "Use same checkpoint")
SAME_SAMPLER, SAME_SCHEDULER = "Use same sampler", "Use same scheduler"  # A1111's "empty" hires choices
_OPTION_FIELDS = ("s_churn", "s_tmin", "s_tmax", "s_noise", "s_min_uncond", "initial_noise_multiplier", "tiling")

# API field -> GenerationRequest field, for fields copied as they are (None = the API default).
_PLAIN_FIELDS: tuple[tuple[str, str], ...] = (
    ("prompt", "prompt"), ("negative_prompt", "negative_prompt"), ("seed", "seed"), ("subseed", "subseed"),
    ("subseed_strength", "subseed_strength"), ("steps", "steps"), ("cfg_scale", "cfg_scale"), ("width", "width"),
    ("height", "height"), ("batch_size", "batch_size"), ("n_iter", "n_iter"), ("eta", "eta"),
)
_INIT_FIELDS: tuple[tuple[str, str], ...] = (
    ("denoising_strength", "denoising_strength"), ("inpaint_full_res", "inpaint_full_res"),
    ("inpaint_full_res_padding", "inpaint_full_res_padding"),
)
# Request fields an `infotext` may fill, keyed by the API fields that, when given, keep the body's value.
_INFOTEXT_FIELDS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    *(((api,), (field,)) for api, field in _PLAIN_FIELDS),
    (("sampler_name", "sampler_index"), ("sampler",)),
    (("scheduler", "sampler_name", "sampler_index"), ("schedule",)),
    (("seed_resize_from_w", "seed_resize_from_h"), ("seed_resize_from_w", "seed_resize_from_h")),
    (("denoising_strength",), ("denoising_strength",)),
    (("mask_blur", "mask_blur_x", "mask_blur_y"), ("mask_blur",)),
    (("inpainting_fill",), ("inpainting_fill",)),
    (("inpaint_full_res",), ("inpaint_full_res",)),
    (("inpaint_full_res_padding",), ("inpaint_full_res_padding",)),
    (("inpainting_mask_invert",), ("invert_mask",)),
    (("enable_hr",), ("enable_hr",)), (("hr_scale",), ("hr_scale",)), (("hr_upscaler",), ("hr_upscaler",)),
    (("hr_resize_x",), ("hr_resize_x",)), (("hr_resize_y",), ("hr_resize_y",)),
    (("hr_second_pass_steps",), ("hr_second_pass_steps",)), (("hr_sampler_name",), ("hr_sampler_name",)),
    (("hr_scheduler",), ("hr_scheduler",)), (("hr_prompt",), ("hr_prompt",)),
    (("hr_negative_prompt",), ("hr_negative_prompt",)), (("hr_checkpoint_name",), ("hr_checkpoint_name",)),
)


@dataclass(frozen=True)
class ApiJob:
    """A converted request and the API switches that are not part of the generation itself."""

    request: GenerationRequest
    send_images: bool = True
    save_images: bool = False
    task_id: str | None = None


def value(body: BaseModel, name: str) -> Any:
    """The body's value of `name`; an explicit null means the field's A1111 default."""
    given = getattr(body, name)
    if given is not None:
        return given
    return type(body).model_fields[name].get_default(call_default_factory=True)


def _refusals(body: GenerationFields) -> list[str]:
    checks: list[tuple[str, Callable[[Any], bool], str]] = [
        ("restore_faces", lambda b: bool(b.restore_faces), "face restoration is not available"),
    ]
    if isinstance(body, HiresFields):
        checks.append(("firstphase_width/firstphase_height",
                       lambda b: bool(b.firstphase_width or b.firstphase_height),
                       "the old hires-fix first-pass size is not available; use width/height with hr_scale or "
                       "hr_resize_x/hr_resize_y"))
    if isinstance(body, InitImageFields):
        checks.append(("latent_mask", lambda b: bool(b.latent_mask), "a separate latent mask is not available"))
    return [f"{name}: {why}" for name, failed, why in checks if failed(body)]


def refuse_unsupported(body: GenerationFields) -> None:
    """InvalidRequest listing every field that asks for a feature this program does not have."""
    problems = _refusals(body)
    if problems:
        raise InvalidRequest("Unsupported request fields: " + "; ".join(problems) + ".")


def find_checkpoint(app: "App", name: str) -> str:
    """The title of the checkpoint `name` matches (A1111 matching); ModelNotFound (404) after one re-scan."""
    catalog = app.models.catalog
    record = catalog.match(name)
    if record is None:
        app.models.refresh()  # A1111 re-scans once before answering "not found"
        record = catalog.find(name)
    return record.title


def find_vae(app: "App", name: str) -> str:
    """The `sd_vae` value for `name`: "Automatic", "None" or a VAE file name; ModelNotFound (404) otherwise."""
    if name in _VAE_KEYWORDS:
        return name
    return app.models.catalog.find_vae(name).name


def refuse_path_options(app: "App", changes: Mapping[str, Any]) -> None:
    """Forbidden (403) when `changes` alter an option that names a file or folder and the server was not started
    with `--api-allow-path-options`. Unchanged values pass, so clients that send back the whole options dict work."""
    if app.launch.api_allow_path_options:
        return
    current = app.settings.get()
    changed = sorted(key for key in current.table.path_keys() if key in changes and changes[key] != current[key])
    if changed:
        raise Forbidden(f"{', '.join(changed)}: options that name files or folders cannot be changed through the "
                        "API; set them in the Settings tab or config.json, or start the server with "
                        "--api-allow-path-options.")


def _overrides(body: GenerationFields, app: "App") -> tuple[dict[str, Any], dict[str, Any]]:
    """(validated per-job overrides, request field changes they imply)."""
    # A null value overrides nothing (it would otherwise mean "no checkpoint" / the option's null value).
    overrides = {key: given for key, given in (body.override_settings or {}).items() if given is not None}
    refuse_path_options(app, overrides)
    for name in _OPTION_FIELDS:
        if getattr(body, name, None) is not None:
            overrides[name] = getattr(body, name)
    changes: dict[str, Any] = {}
    if overrides.get(CHECKPOINT_KEY):
        overrides[CHECKPOINT_KEY] = changes["checkpoint"] = find_checkpoint(app, str(overrides[CHECKPOINT_KEY]))
    if overrides.get(VAE_KEY):
        overrides[VAE_KEY] = changes["vae"] = find_vae(app, str(overrides[VAE_KEY]))
    effective = app.settings.get().with_overrides(overrides)  # InvalidRequest for unknown keys / bad values
    changes["clip_skip"] = int(effective[CLIP_SKIP_KEY])
    return overrides, changes


def _sampler_changes(body: GenerationFields) -> dict[str, Any]:
    return {"sampler": body.sampler_name or value(body, "sampler_index") or "Euler",
            "schedule": body.scheduler or "Automatic"}


def _seed_resize(size: int | None) -> int:
    return max(0, size or 0)  # A1111 uses -1 (and 0) for "off"


def _common_changes(body: GenerationFields, app: "App") -> dict[str, Any]:
    changes: dict[str, Any] = {field: value(body, api) for api, field in _PLAIN_FIELDS}
    changes.update(_sampler_changes(body))
    changes["seed_resize_from_w"] = _seed_resize(body.seed_resize_from_w)
    changes["seed_resize_from_h"] = _seed_resize(body.seed_resize_from_h)
    changes["styles"] = tuple(body.styles or ())
    if body.refiner_checkpoint:
        changes["refiner_checkpoint"] = find_checkpoint(app, body.refiner_checkpoint)
    if body.refiner_switch_at is not None:
        changes["refiner_switch_at"] = body.refiner_switch_at
    overrides, implied = _overrides(body, app)
    changes["overrides"] = overrides
    changes.update(implied)
    return changes


def _same_as_first(name: str | None, keyword: str) -> str:
    """A hires sampler/scheduler field: null, empty or A1111's "Use same ..." all mean the first pass's."""
    return "" if not name or name == keyword else name


def _hires_changes(body: HiresFields) -> dict[str, Any]:
    """The hires-fix fields of a txt2img body (only with `enable_hr`; else they have no effect)."""
    if not body.enable_hr:
        return {}
    return {
        "enable_hr": True, "hr_scale": float(value(body, "hr_scale")), "hr_upscaler": body.hr_upscaler or "Latent",
        "hr_resize_x": int(value(body, "hr_resize_x")), "hr_resize_y": int(value(body, "hr_resize_y")),
        "hr_second_pass_steps": int(value(body, "hr_second_pass_steps")),
        "hr_sampler_name": _same_as_first(body.hr_sampler_name, SAME_SAMPLER),
        "hr_scheduler": _same_as_first(body.hr_scheduler, SAME_SCHEDULER),
        "hr_prompt": body.hr_prompt or "", "hr_negative_prompt": body.hr_negative_prompt or "",
        "hr_checkpoint_name": "" if body.hr_checkpoint_name in _SAME_MODEL else str(body.hr_checkpoint_name),
        "firstpass_image": decode_image(body.firstpass_image, "firstpass_image") if body.firstpass_image else None,
        "denoising_strength": 0.75 if body.denoising_strength is None else body.denoising_strength,
    }


def _check_hires(app: "App", request: GenerationRequest) -> GenerationRequest:
    """Unknown upscaler (422), hires sampler (400) or hires checkpoint (404) before the job is queued; the
    checkpoint (also one an infotext named) becomes its title."""
    if request.mode != "txt2img" or not request.enable_hr:
        return request
    app.models.upscalers.find(request.hr_upscaler)
    app.samplers.resolve(request.hr_sampler_name or request.sampler, request.hr_scheduler or request.schedule)
    if request.hr_checkpoint_name:
        return request.with_changes(hr_checkpoint_name=find_checkpoint(app, request.hr_checkpoint_name))
    return request


def _enum(kind: type[InpaintFill] | type[ResizeMode], number: int, field: str) -> Any:
    try:
        return kind(number)
    except ValueError:
        allowed = ", ".join(f"{m.value} ({m.name.lower().replace('_', ' ')})" for m in kind)
        raise InvalidRequest(f"{field} must be one of {allowed}; got {number}.") from None


def _mask_blur(body: InitImageFields) -> int:
    if body.mask_blur is not None:
        return body.mask_blur
    blur_x, blur_y = value(body, "mask_blur_x"), value(body, "mask_blur_y")
    if blur_x != blur_y:
        raise InvalidRequest(f"mask_blur_x ({blur_x}) and mask_blur_y ({blur_y}) differ; separate horizontal and "
                             "vertical mask blur is not available, send one mask_blur.")
    return int(blur_x)


def _init_images(body: InitImageFields) -> tuple[Image.Image, Image.Image | None]:
    images = body.init_images or []
    if not images:
        raise InvalidRequest("init_images is required for img2img: send one base64-encoded image.")
    if len(images) > 1:
        raise InvalidRequest(f"init_images holds {len(images)} images; one init image per request is supported.")
    init = decode_image(images[0], "init_images[0]")
    mask = decode_image(body.mask, "mask") if body.mask else None
    if mask is not None and mask.size != init.size:
        mask = mask.resize(init.size, Image.Resampling.LANCZOS)
    return init, mask


def _init_changes(body: InitImageFields) -> dict[str, Any]:
    init, mask = _init_images(body)
    changes: dict[str, Any] = {api: value(body, api) for api, _ in _INIT_FIELDS}
    changes.update(
        init_image=init, mask=mask, mode="inpaint" if mask is not None else "img2img",
        resize_mode=_enum(ResizeMode, int(value(body, "resize_mode")), "resize_mode"),
        inpainting_fill=_enum(InpaintFill, int(value(body, "inpainting_fill")), "inpainting_fill"),
        mask_blur=_mask_blur(body), invert_mask=bool(value(body, "inpainting_mask_invert")),
    )
    return changes


def _apply_infotext(body: GenerationFields, request: GenerationRequest) -> GenerationRequest:
    """Fill the fields the body leaves unset from `body.infotext` (A1111 `apply_infotext`)."""
    if not body.infotext:
        return request
    from_text = infotext.apply_to_request(infotext.parse(body.infotext), request)
    given = body.model_fields_set
    changes = {field: getattr(from_text, field)
               for api_names, fields in _INFOTEXT_FIELDS if not given.intersection(api_names) for field in fields}
    if CLIP_SKIP_KEY not in (body.override_settings or {}):
        changes["clip_skip"] = from_text.clip_skip
    # settings the infotext states (RNG, ENSD, ...) apply unless override_settings names them
    changes["overrides"] = {**from_text.overrides, **request.overrides}
    return dataclasses.replace(request, **changes)


def build_job(body: GenerationFields, app: "App", mode: str) -> ApiJob:
    """Convert a txt2img ("txt2img") or img2img ("img2img"/"inpaint") body; see the module doc for the rules."""
    refuse_unsupported(body)
    changes = _common_changes(body, app)
    if mode == "txt2img":
        changes["mode"] = "txt2img"
        if isinstance(body, HiresFields):
            changes.update(_hires_changes(body))
    else:
        if not isinstance(body, InitImageFields):
            raise InvalidRequest(f"mode {mode!r} needs the img2img fields (init_images, mask, ...).")
        changes.update(_init_changes(body))
        if mode == "inpaint" and changes["mode"] != "inpaint":
            raise InvalidRequest("mode 'inpaint' needs a mask (base64 image, white = repaint).")
    request = _apply_infotext(body, GenerationRequest(**changes))
    app.samplers.resolve(request.sampler, request.schedule)  # UnknownSampler (400) before queueing
    request = _check_hires(app, request)
    request = app.extensions.scripts.request_from_api(body.script_name, body.script_args, body.alwayson_scripts,
                                                      request)
    return ApiJob(request, send_images=bool(value(body, "send_images")), save_images=bool(body.save_images),
                  task_id=body.force_task_id or None)

