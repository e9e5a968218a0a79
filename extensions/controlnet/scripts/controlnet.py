"""ControlNet (built-in extension), speaking the A1111 `sd-webui-controlnet` extension's API.

A request carries units, as that extension's clients send them:

    "alwayson_scripts": {"controlnet": {"args": [{"enabled": true, "module": "none", "model": "name [hash]",
                                                  "weight": 1.0, "image": "<base64>", ...}, ...]}}

Each enabled unit runs a diffusers `ControlNetModel` beside every UNet call (the extension API's UNET_CALL hook)
and adds its residuals to the UNet's skip connections, scaled by the unit's weight:

- `model`: a file or diffusers folder in `models/ControlNet` (name with or without the `[hash]`); diffusers
  single files and folders, and original (`control_model.`-prefixed or plain LDM) single files, SD 1.x/2.x and SDXL.
  The network is built from the job's UNet config (nothing is downloaded) and its weights loaded into it; it is
  held in the model manager's budgeted cache of extension networks (by file and UNet config), and a file that does
  not fit the checkpoint stops the job with a clear message.
- `image`: the control image (base64, or `{"image": ..., "mask": ...}`); without one, the img2img input.
  `resize_mode` "Just Resize" / "Crop and Resize" (default) / "Resize and Fill", to the generation size.
- `module`: the preprocessor, run on the control image before it is fitted to the generation size (see
  cnlib/preprocessors.py; depth, normal_map, segmentation and openpose read local transformers weights,
  cnlib/annotators.py and cnlib/pose.py, loaded once per job and let go when its images are done); unknown ones are
  refused with the list. `processor_res`,
  `threshold_a`/`threshold_b` (-1: the preprocessor's default) and `pixel_perfect` (the resolution that matches the
  generation size, as A1111 computes it) are its settings. `shuffle` draws from the job's seed (a -1 seed is chosen
  here, so the infotext's seed reproduces it); `inpaint_only` uses the unit's mask (`image: {"image", "mask"}`,
  `mask_image` or `mask`) or, with the img2img image, the img2img mask: masked pixels reach the ControlNet as -1.
  Without an img2img mask, the finished picture keeps the control image outside the unit's mask (grown and blurred
  by `control_net_inpaint_blur_sigma`, cnlib/control_image.py `inpaint_blend`), as A1111's extension blends it.
- `guidance_start` / `guidance_end`: the unit acts while step / steps is within [start, end] (A1111's rule).
- `control_mode`: "Balanced" (0, the residuals on every row), "My prompt is more important" (1: residuals scaled
  by 0.825^(12 - i) from the deepest skip connection up, A1111's soft injection), "ControlNet is more important"
  (2: soft injection, and only on the rows of the prompt, not the negative prompt).

IP-Adapter units (module `ip-adapter_clip_h` / `ip-adapter_clip_g` / `ip-adapter-auto` and A1111's older names,
model an IP-Adapter file) add image attention to the UNet's cross-attentions instead of residuals; the CLIP vision
encoder comes from `models/clip_vision` (see cnlib/ip_adapter.py and cnlib/ip_attention.py). Weight and the
guidance window apply; control mode and resize mode do not.

Infotext: `ControlNet 0: "Module: none, Model: name [hash], Weight: 1, ..."` per unit, as the extension writes it;
pasting it (or sending it from PNG Info) fills the unit tabs (cnlib/paste.py). X/Y/Z plot axes "[ControlNet] ..."
change unit 0 (cnlib/plot_axes.py).
Routes: `/controlnet/version`, `/controlnet/model_list`, `/controlnet/module_list` (with A1111's `module_detail`),
`/controlnet/settings` and `/controlnet/detect` (the preprocessors' output for base64 pictures; cnlib/routes.py).
Settings (section "ControlNet", cnlib/units.py): `control_net_unit_count` (the page's unit tabs at start, and the
units a job accepts) and `control_net_model_cache_size` (the model manager's budget of loaded networks).

The page has a "ControlNet" accordion in txt2img and img2img with one tab per unit (cnlib/page.py); its controls
make the same `units` list an API request sends (through the extension API's `Combined` value).
"""


from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Mapping

from PIL import Image

from modules.extensions.api import (
    AfterImageContext,
    AppStartedContext,
    BeforeJobContext,
    ExtensionContext,
    Hook,
    InfotextPaste,
    UiBuilder,
    UNetCallContext,
    UserError,
    with_infotext_params,
)

from ..cnlib import ip_adapter, page
from ..cnlib.annotators import AnnotatorFolders, AnnotatorSession
from ..cnlib.control_image import control_tensor, fit, inpaint_blend, preprocess, unit_map
from ..cnlib.ip_attention import IPAdapterRunner
from ..cnlib.models import ControlNetModels, load_controlnet
from ..cnlib.paste import read_pasted
from ..cnlib.plot_axes import plot_axes
from ..cnlib.preprocessors import PREPROCESSORS, Extras, find, opencv
from ..cnlib.routes import DetectRequest, NotAvailable, annotator_device, detect
from ..cnlib.units import (
    BLUR_SIGMA,
    DEFAULT_UNIT_COUNT,
    MODULES,
    ControlUnit,
    decode_picture,
    parse_unit,
    positional,
    settings,
    unit_count,
)

__all__ = ["ControlUnit", "Extras", "NotAvailable", "control_tensor", "decode_picture", "find", "fit",
           "load_controlnet", "parse_unit", "preprocess", "unit_map"]  # what tests and users reach here

TITLE = "ControlNet"
KEY = "controlnet"
VERSION = 2  # what `/controlnet/version` answers: the extension's API generation its clients check
SOFT_INJECTION_BASE = 0.825


# -- hooks -----------------------------------------------------------------------------------------------------------


def _flag_folder(value: Any, data_dir: Path) -> Path | None:
    """A folder given on the command line (a relative one is under the data directory); None when not given."""
    if not value:
        return None
    folder = Path(str(value)).expanduser()
    return folder if folder.is_absolute() else data_dir / folder


class ControlNetExtension:
    """The extension's state: the model folders and the loaded networks."""

    def __init__(self) -> None:
        self.models = ControlNetModels()
        self.ip_adapters = IPAdapterRunner()
        self.annotator_folders = AnnotatorFolders()
        self.page_units = DEFAULT_UNIT_COUNT
        """The unit tabs the page was built with (`control_net_unit_count` at start): what a paste fills."""

    def set_data_dir(self, data_dir: Path, models_dir: Path | None = None,
                     flags: Mapping[str, Any] | None = None) -> None:
        """The folders to look in; `flags` are this extension's launch flags (its preload.py, API 1.9)."""
        flags = flags or {}
        self.models.set_data_dir(data_dir, models_dir, _flag_folder(flags.get("controlnet_dir"), data_dir))
        self.ip_adapters.files.set_data_dir(data_dir, models_dir)
        self.annotator_folders = AnnotatorFolders.for_data_dir(
            data_dir, models_dir, _flag_folder(flags.get("controlnet_annotator_models_path"), data_dir))

    def app_started(self, ctx: AppStartedContext) -> None:
        self.set_data_dir(Path(ctx.data_dir), ctx.models_dir, ctx.launch_flags)
        api = ctx.fastapi
        api.add_api_route("/controlnet/version", lambda: {"version": VERSION}, methods=["GET"])
        api.add_api_route("/controlnet/model_list", self.model_list, methods=["GET"])
        api.add_api_route("/controlnet/module_list", self.module_list, methods=["GET"])
        api.add_api_route("/controlnet/settings", lambda: {"control_net_unit_count": unit_count(ctx.options())},
                          methods=["GET"])
        api.add_api_route("/controlnet/detect", self.detect, methods=["POST"])

    def detect(self, body: DetectRequest) -> dict[str, Any]:
        return detect(body, self.annotator_folders)

    def preview(self, picture: Image.Image, module: str, resolution: float, a: float, b: float) -> Image.Image:
        """The page's "Preview" button: the preprocessor on the control image (annotators loaded for this call)."""
        session = AnnotatorSession(self.annotator_folders, device=annotator_device())
        try:
            return preprocess(picture, module, resolution, a, b, Extras(annotators=session))
        finally:
            session.release()

    def model_list(self, update: bool = True) -> dict[str, Any]:
        return {"model_list": self.models.titles()}

    def module_list(self, alias_names: bool = False) -> dict[str, Any]:
        """The preprocessors, and (A1111's `module_detail`) their sliders: resolution, threshold a, threshold b."""
        detail = {name: {"model_free": False, "sliders": p.sliders()} for name, p in PREPROCESSORS.items()}
        detail.update({name: {"model_free": False, "sliders": []} for name in ip_adapter.MODULES})
        return {"module_list": list(MODULES), "module_detail": detail}

    def before_job(self, ctx: BeforeJobContext) -> Any:
        """Parse and check the units (models found, images decoded) once; the request carries them to the hooks."""
        raw = ctx.args.get("units") or []
        if not isinstance(raw, (list, tuple)):
            raise UserError("ControlNet: `args` must be a list of units.")
        most = unit_count(ctx.options)
        if len(raw) > most:
            raise UserError(f"ControlNet: at most {most} units (setting `control_net_unit_count`), got {len(raw)}.")
        units = [parse_unit(item, index) for index, item in enumerate(raw)]
        request = ctx.request
        if request.seed == -1 and any(unit.enabled and unit.module == "shuffle" for unit in units):
            request = request.with_changes(seed=secrets.randbelow(4294967294))  # the shuffle's seed is the job's
        session = AnnotatorSession(self.annotator_folders)
        active, ip_units = [], []
        for index, unit in enumerate(units):
            if not unit.enabled:
                continue
            if not unit.model:
                raise UserError(f"ControlNet unit {index}: no model chosen.")
            unit.model_path, unit.model_title = self.models.find(unit.model)
            if unit.picture is None and request.init_image is not None:
                unit.picture = request.init_image
                unit.mask = _img2img_mask(request) if unit.mask is None else unit.mask
            if unit.picture is None:
                raise UserError(f"ControlNet unit {index}: no control image (send `image`, or use img2img).")
            active.append((index, unit))
            if ip_adapter.is_module(unit.module):
                ip_units.append(self.ip_adapters.prepare(index, unit.module, unit.model_path, unit.picture,
                                                         unit.weight, unit.guidance_start, unit.guidance_end))
                continue
            preprocessor = PREPROCESSORS[unit.module]
            if preprocessor.needs_opencv:
                opencv(preprocessor.name)  # refused before any work, naming the package to install
            if preprocessor.weights is not None:
                self.annotator_folders.find(preprocessor.weights, preprocessor.name)  # likewise, naming the folder
            subseed = request.subseed if request.subseed != -1 else request.seed  # A1111's NumPy seed
            unit.seed, unit.annotators = (max(request.seed, 0) + max(subseed, 0)) & 0xFFFFFFFF, session
        args = {**request.extension_args, KEY: {"units": units, "active": active, "ip_adapter": ip_units}}
        return request.with_changes(extension_args=args)

    def unet_call(self, ctx: UNetCallContext) -> None:
        import torch

        if ctx.refiner:  # units belong to the base model, as in sd-webui-controlnet
            return
        for _, unit in ctx.args.get("active", ()):
            if unit.weight == 0 or not unit.active_at(ctx.step, ctx.total) or ip_adapter.is_module(unit.module):
                continue
            assert unit.model_path is not None
            sample = ctx.sample[:, :4]
            if unit.annotators is not None:
                unit.annotators.device = sample.device  # a preprocessor with weights runs beside the UNet
            height, width = sample.shape[-2] * 8, sample.shape[-1] * 8
            cond = control_tensor(unit, width, height, sample.device, sample.dtype).expand(len(sample), -1, -1, -1)
            extra = {} if ctx.added_cond_kwargs is None else {"added_cond_kwargs": dict(ctx.added_cond_kwargs)}
            with self.models.hold(ctx, unit.model_path, load_controlnet) as net:
                down, mid = net(sample, ctx.timestep, encoder_hidden_states=ctx.encoder_hidden_states,
                                controlnet_cond=cond, conditioning_scale=unit.weight, return_dict=False, **extra)
            if unit.control_mode != "Balanced":  # soft injection: deeper skip connections count more
                scales = [SOFT_INJECTION_BASE ** float(len(down) - i) for i in range(len(down) + 1)]
                down = [residual * scale for residual, scale in zip(down, scales)]
                mid = mid * scales[-1]
            if unit.control_mode == "ControlNet is more important":  # not on the negative prompt's rows
                keep = torch.tensor([not u for u in ctx.uncond], device=sample.device, dtype=sample.dtype)
                down = [residual * keep.view(-1, 1, 1, 1) for residual in down]
                mid = mid * keep.view(-1, 1, 1, 1)
            ctx.add_residuals(down=list(down), mid=mid)
        self.ip_adapters.unet_call(ctx, ctx.args.get("ip_adapter", ()))

    def after_image(self, ctx: AfterImageContext) -> None:
        for _, unit in ctx.args.get("active", ()):
            if unit.annotators is not None:
                unit.annotators.release()  # the job's control images are made: its annotator models go
        if ctx.request.mask is None:  # with img2img's own mask, the core's paste-back does it (A1111 too)
            sigma = int(ctx.options.get(BLUR_SIGMA, 7))
            for _, unit in ctx.args.get("active", ()):
                if unit.module == "inpaint_only":
                    ctx.image = inpaint_blend(ctx.image, unit, sigma)
        params = {f"ControlNet {index}": unit.infotext() for index, unit in ctx.args.get("active", ())}
        if params:
            ctx.infotext = with_infotext_params(ctx.infotext, params)




def _img2img_mask(request: Any) -> Image.Image | None:
    """The img2img mask (white = repaint) as the request means it: inverted when `invert_mask` is set."""
    if request.mask is None:
        return None
    if not request.invert_mask:
        return request.mask
    from PIL import ImageOps

    return ImageOps.invert(request.mask.convert("L"))


def register(ext: ExtensionContext) -> None:
    state = ControlNetExtension()

    def ui(builder: UiBuilder) -> dict[str, Any]:
        """The "ControlNet" accordion's unit tabs; their values make the `units` list (see cnlib/page.py)."""
        if builder.data_dir is not None and not state.models.folders:
            state.set_data_dir(Path(builder.data_dir), builder.models_dir, builder.launch_flags)
        state.page_units = unit_count(builder.options)
        return {"units": page.build(builder, state.page_units, list(MODULES), state.models.titles, state.preview)}

    paste = InfotextPaste(("ControlNet *",), lambda ctx: read_pasted(ctx, state.page_units, state.models.titles))
    ext.add_script(TITLE, ui=ui, always_on=True, positional=positional, paste=paste)
    for axis in plot_axes(state.models.find, state.models.titles, parse_unit, lambda: list(MODULES)):
        ext.add_plot_axis(axis)
    ext.on(Hook.UI_SETTINGS, settings)
    ext.on(Hook.APP_STARTED, state.app_started)
    ext.on(Hook.BEFORE_JOB, state.before_job)
    ext.on(Hook.UNET_CALL, state.unet_call)
    ext.on(Hook.AFTER_IMAGE, state.after_image)

