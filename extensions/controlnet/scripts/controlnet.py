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
  cnlib/preprocessors.py; depth, normal_map and segmentation read local transformers weights, cnlib/annotators.py,
  loaded once per job and let go when its images are done); unknown ones are refused with the list. `processor_res`,
  `threshold_a`/`threshold_b` (-1: the preprocessor's default) and `pixel_perfect` (the resolution that matches the
  generation size, as A1111 computes it) are its settings. `shuffle` draws from the job's seed (a -1 seed is chosen
  here, so the infotext's seed reproduces it); `inpaint_only` uses the unit's mask (`image: {"image", "mask"}`,
  `mask_image` or `mask`) or, with the img2img image, the img2img mask: masked pixels reach the ControlNet as -1.
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
`/controlnet/settings` and `/controlnet/detect` (the preprocessors' output for base64 pictures).

The page has a "ControlNet" accordion in txt2img and img2img with one tab per unit (cnlib/page.py); its controls
make the same `units` list an API request sends (through the extension API's `Combined` value).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager, Mapping, Sequence

from PIL import Image
from pydantic import BaseModel

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
from ..cnlib.ip_attention import IPAdapterRunner
from ..cnlib.paste import read_pasted
from ..cnlib.plot_axes import plot_axes
from ..cnlib.preprocessors import PREPROCESSORS, Extras, find, opencv, pixel_perfect_resolution

TITLE = "ControlNet"
KEY = "controlnet"
VERSION = 2  # what `/controlnet/version` answers: the extension's API generation its clients check
MAX_UNITS = 3
MODEL_EXTENSIONS = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
MODULES = (*PREPROCESSORS, *ip_adapter.MODULES)
RESIZE_MODES = page.RESIZE_MODES
CONTROL_MODES = page.CONTROL_MODES
SOFT_INJECTION_BASE = 0.825


# -- units ---------------------------------------------------------------------------------------------------------


@dataclass
class ControlUnit:
    """One unit of a request, with A1111's field names and defaults. `picture` is the decoded control image;
    `processor_res` / `threshold_a` / `threshold_b` -1 mean the preprocessor's default."""

    enabled: bool = True
    module: str = "none"
    model: str = ""
    weight: float = 1.0
    picture: Image.Image | None = None
    resize_mode: str = "Crop and Resize"
    processor_res: int = 512
    threshold_a: float = -1.0
    threshold_b: float = -1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    control_mode: str = "Balanced"
    pixel_perfect: bool = False
    model_path: Path | None = None
    model_title: str = ""
    mask: Image.Image | None = None
    seed: int | None = None
    annotators: AnnotatorSession | None = field(default=None, repr=False)
    _tensors: dict[Any, Any] = field(default_factory=dict, repr=False)

    def active_at(self, step: int, total: int) -> bool:
        """A1111's guidance window: the unit acts while step / total is within [guidance_start, guidance_end]."""
        done = step / max(total, 1)
        return self.guidance_start <= done <= self.guidance_end

    def infotext(self) -> str:
        """The unit as the A1111 extension writes it into the infotext (a quoted `Key: value, ...` list)."""
        fields = {
            "Module": self.module, "Model": self.model_title, "Weight": _number(self.weight),
            "Resize Mode": self.resize_mode, "Processor Res": self.processor_res,
            "Threshold A": _number(self.threshold_a), "Threshold B": _number(self.threshold_b),
            "Guidance Start": _number(self.guidance_start), "Guidance End": _number(self.guidance_end),
            "Pixel Perfect": self.pixel_perfect, "Control Mode": self.control_mode,
        }
        return ", ".join(f"{key}: {value}" for key, value in fields.items())


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _choice(value: Any, choices: Sequence[str], what: str) -> str:
    """A1111 sends these as labels or as their index."""
    if isinstance(value, bool):
        raise UserError(f"ControlNet: {what} {value!r} is not one of: {', '.join(choices)}.")
    if isinstance(value, int) and 0 <= value < len(choices):
        return choices[value]
    text = str(value).strip()
    for choice in choices:
        if text.lower() == choice.lower():
            return choice
    raise UserError(f"ControlNet: {what} {value!r} is not one of: {', '.join(choices)}.")


def _float(raw: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = raw.get(key, default)
    try:
        number = float(default if value is None else value)
    except (TypeError, ValueError):
        raise UserError(f"ControlNet: {key} must be a number, got {value!r}.") from None
    if not low <= number <= high:
        raise UserError(f"ControlNet: {key} must be between {low} and {high}, got {number}.")
    return number


def decode_picture(value: Any) -> Image.Image | None:
    """A unit's image: base64 (with or without a data-URL prefix), `{"image": ...}`, or a PIL image."""
    if value is None or value == "":
        return None
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, Mapping):
        return decode_picture(value.get("image"))
    if not isinstance(value, str):
        raise UserError("ControlNet: the unit's image must be a base64-encoded picture.")
    data = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        picture = Image.open(io.BytesIO(base64.b64decode(data, validate=False)))
        picture.load()
    except (binascii.Error, OSError, ValueError) as exc:
        raise UserError(f"ControlNet: the unit's image is not a picture ({exc}).") from None
    return picture


def parse_unit(raw: Any, index: int) -> ControlUnit:
    """A unit from the API's dict (A1111's field names; `input_image` is an older spelling of `image`)."""
    if isinstance(raw, ControlUnit):
        return raw
    if not isinstance(raw, Mapping):
        raise UserError(f"ControlNet unit {index}: expected an object with the unit's fields, "
                        f"got {type(raw).__name__}.")
    preprocessor = find(str(raw.get("module") or "none"))
    module = preprocessor.name if preprocessor else ip_adapter.module_name(str(raw.get("module")))
    if module is None:
        raise UserError(f"ControlNet unit {index}: preprocessor {str(raw.get('module')).strip().lower()!r} is not "
                        f"available; available: {', '.join(MODULES)}.")
    start = _float(raw, "guidance_start", 0.0, 0.0, 1.0)
    end = _float(raw, "guidance_end", 1.0, 0.0, 1.0)
    if start > end:
        raise UserError(f"ControlNet unit {index}: guidance_start ({start}) is after guidance_end ({end}).")
    image = raw.get("image", raw.get("input_image"))
    mask = image.get("mask") if isinstance(image, Mapping) else None
    return ControlUnit(
        enabled=bool(raw.get("enabled", True)), module=module, model=str(raw.get("model") or "").strip(),
        weight=_float(raw, "weight", 1.0, 0.0, 2.0), picture=decode_picture(image),
        mask=decode_picture(mask or raw.get("mask_image") or raw.get("mask")),
        resize_mode=_choice(raw.get("resize_mode", "Crop and Resize"), RESIZE_MODES, "resize_mode"),
        processor_res=int(_float(raw, "processor_res", 512, -1, 4096)),
        threshold_a=_float(raw, "threshold_a", -1.0, -1e9, 1e9),
        threshold_b=_float(raw, "threshold_b", -1.0, -1e9, 1e9),
        guidance_start=start, guidance_end=end,
        control_mode=_choice(raw.get("control_mode", "Balanced"), CONTROL_MODES, "control_mode"),
        pixel_perfect=bool(raw.get("pixel_perfect", False)),
    )


def positional(args: list[Any]) -> dict[str, Any]:
    """A1111's `args`: one unit object per position."""
    return {"units": list(args)}


# -- models --------------------------------------------------------------------------------------------------------


class ControlNetModels:
    """The ControlNet files of `models/ControlNet` (and A1111's extension folder); the loaded networks are held in
    the model manager's cache of extension networks (`hold`)."""

    def __init__(self) -> None:
        self.folders: list[Path] = []
        self._hashes: dict[tuple[Path, float], str] = {}

    def set_data_dir(self, data_dir: Path) -> None:
        self.folders = [data_dir / "models" / "ControlNet", data_dir / "extensions" / "sd-webui-controlnet" / "models"]

    def files(self) -> dict[str, Path]:
        """Name (file stem or folder name) -> path, sorted by name."""
        found: dict[str, Path] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
                if path.is_dir() and (path / "config.json").is_file():
                    found.setdefault(path.name, path)
                elif path.is_file() and path.suffix.lower() in MODEL_EXTENSIONS:
                    found.setdefault(path.stem, path)
        return dict(sorted(found.items(), key=lambda item: item[0].lower()))

    def short_hash(self, path: Path) -> str:
        """First 8 hex digits of the file's sha256 (of the weights file for a folder), cached by mtime."""
        target = path
        if path.is_dir():
            weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
            if not weights:
                return "00000000"
            target = weights[0]
        key = (target, target.stat().st_mtime)
        if key not in self._hashes:
            digest = hashlib.sha256()
            with open(target, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            self._hashes[key] = digest.hexdigest()[:8]
        return self._hashes[key]

    def titles(self) -> list[str]:
        return [f"{name} [{self.short_hash(path)}]" for name, path in self.files().items()]

    def find(self, name: str) -> tuple[Path, str]:
        """(path, "name [hash]") for a unit's model name, with or without its hash; UserError naming the folders."""
        wanted = name.split(" [", 1)[0].strip()
        files = self.files()
        path = files.get(wanted) or next((p for n, p in files.items() if n.lower() == wanted.lower()), None)
        if path is None:
            where = " or ".join(str(folder) for folder in self.folders) or "models/ControlNet"
            known = ", ".join(files) or "none"
            raise UserError(f"ControlNet model {name!r} not found in {where} (found: {known}).")
        return path, f"{path.stem if path.is_file() else path.name} [{self.short_hash(path)}]"

    def hold(self, ctx: UNetCallContext, path: Path) -> ContextManager[Any]:
        """`with models.hold(ctx, path) as net:` the network of `path` for the call's UNet, from the model manager's
        cache: keyed by the file (and its size and time) and by the UNet's config, device and dtype, so another
        checkpoint (another family: a clear error) loads it again and a changed file is read again."""
        unet = ctx.unet
        stat = path.stat()
        config = json.dumps(dict(unet.config), sort_keys=True, default=str)
        key = ("controlnet", path, stat.st_size, stat.st_mtime_ns, config, str(unet.device), str(unet.dtype))
        return ctx.hold_model(key, lambda: load_controlnet(path, unet))


def load_controlnet(path: Path, unet: Any) -> Any:
    """A diffusers ControlNetModel from a diffusers folder, a diffusers single file or an original single file."""
    import torch
    from diffusers import ControlNetModel

    if path.is_dir():
        model = ControlNetModel.from_pretrained(str(path), local_files_only=True, torch_dtype=unet.dtype)
        return model.to(unet.device).eval()
    state = _read_weights(path)
    with torch.device("meta"):  # only the config is wanted here: no weights are allocated
        config = dict(ControlNetModel.from_unet(_four_channel(unet), load_weights_from_unet=False).config)
    if any(key.startswith(("control_model.", "input_blocks.", "zero_convs.")) for key in state):
        from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

        state = convert_controlnet_checkpoint(state, config)
    with torch.device("meta"):
        model = ControlNetModel.from_config(config)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        problem = f"{len(missing)} weights missing, {len(unexpected)} unexpected" if missing or unexpected else ""
    except RuntimeError as exc:  # weights of other shapes (another family with the same names)
        problem = f"{str(exc).count('size mismatch')} weights of another shape"
    if problem:
        raise UserError(f"ControlNet file {path.name} does not fit this checkpoint's UNet ({problem}; an SDXL "
                        "ControlNet needs an SDXL checkpoint and an SD 1.x one an SD 1.x checkpoint).")
    if model.dtype != unet.dtype:
        model = model.to(dtype=unet.dtype)
    return model.to(unet.device).eval()


def _four_channel(unet: Any) -> Any:
    """A ControlNet takes the 4 latent channels even beside a 9-channel inpainting UNet."""
    if unet.config.in_channels == 4:
        return unet
    from diffusers import UNet2DConditionModel

    config = dict(unet.config)
    config["in_channels"] = 4
    return UNet2DConditionModel.from_config(config)


def _read_weights(path: Path) -> dict[str, Any]:
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error type for a bad header
            raise UserError(f"ControlNet file {path.name} cannot be read ({exc}).") from None
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle that is not plain tensors is refused by the weights-only loader
        raise UserError(f"ControlNet file {path.name} cannot be read safely ({exc}).") from None
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    return {key: value for key, value in data.items() if isinstance(value, torch.Tensor)}


# -- the control image -----------------------------------------------------------------------------------------------


def preprocess(picture: Image.Image, module: str, resolution: float = -1, threshold_a: float = -1,
               threshold_b: float = -1, extras: Extras | None = None) -> Image.Image:
    """The preprocessor's output (RGB; RGBA for inpaint_only); UserError for an unknown module or one that needs a
    missing library or weights. An IP-Adapter module shows the picture as its CLIP encoder sees it (resized and
    centre-cropped)."""
    if ip_adapter.is_module(module):
        return ip_adapter.encoder_view(picture)
    preprocessor = find(module)
    if preprocessor is None:
        raise UserError(f"ControlNet: preprocessor {module!r} is not available; available: {', '.join(MODULES)}.")
    return preprocessor(picture, resolution, threshold_a, threshold_b, extras)


def unit_map(unit: ControlUnit, width: int, height: int) -> Image.Image:
    """The unit's preprocessed control image for a generation of width x height (before fitting to that size)."""
    assert unit.picture is not None
    resolution: float = unit.processor_res
    if unit.pixel_perfect:
        resolution = pixel_perfect_resolution(unit.picture.width, unit.picture.height, width, height,
                                              unit.resize_mode)
    return preprocess(unit.picture, unit.module, resolution, unit.threshold_a, unit.threshold_b,
                      Extras(seed=unit.seed, mask=unit.mask, annotators=unit.annotators))


def fit(picture: Image.Image, width: int, height: int, mode: str) -> Image.Image:
    """The control image at the generation size: stretched, cropped to cover, or fitted with black borders."""
    if picture.size == (width, height) or mode == "Just Resize":
        return picture.resize((width, height), Image.Resampling.LANCZOS) if picture.size != (width, height) \
            else picture
    ratio = (max if mode == "Crop and Resize" else min)(width / picture.width, height / picture.height)
    scaled = picture.resize((max(1, round(picture.width * ratio)), max(1, round(picture.height * ratio))),
                            Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA" if picture.mode == "RGBA" else "RGB", (width, height))  # RGBA: borders masked
    canvas.paste(scaled, ((width - scaled.width) // 2, (height - scaled.height) // 2))
    return canvas


def control_tensor(unit: ControlUnit, width: int, height: int, device: Any, dtype: Any) -> Any:
    """The unit's control image as a (1, 3, height, width) tensor in [0, 1] (as diffusers' ControlNet pipelines
    prepare it), made once per size; an RGBA map (inpaint_only) is -1 where transparent (A1111's inpaint hint)."""
    import numpy as np
    import torch

    key = (width, height, str(device), dtype)
    if key not in unit._tensors:
        picture = fit(unit_map(unit, width, height), width, height, unit.resize_mode)
        array = np.asarray(picture, dtype=np.float32) / 255.0
        if array.shape[2] == 4:
            array = np.where(array[..., 3:] < 0.5, np.float32(-1.0), array[..., :3])
        unit._tensors[key] = torch.from_numpy(array).permute(2, 0, 1)[None].to(device, dtype)
    return unit._tensors[key]


# -- hooks -----------------------------------------------------------------------------------------------------------


class ControlNetExtension:
    """The extension's state: the model folders and the loaded networks."""

    def __init__(self) -> None:
        self.models = ControlNetModels()
        self.ip_adapters = IPAdapterRunner()
        self.annotator_folders = AnnotatorFolders()

    def set_data_dir(self, data_dir: Path) -> None:
        self.models.set_data_dir(data_dir)
        self.ip_adapters.files.set_data_dir(data_dir)
        self.annotator_folders = AnnotatorFolders.for_data_dir(data_dir)

    def app_started(self, ctx: AppStartedContext) -> None:
        self.set_data_dir(Path(ctx.data_dir))
        api = ctx.fastapi
        api.add_api_route("/controlnet/version", lambda: {"version": VERSION}, methods=["GET"])
        api.add_api_route("/controlnet/model_list", self.model_list, methods=["GET"])
        api.add_api_route("/controlnet/module_list", self.module_list, methods=["GET"])
        api.add_api_route("/controlnet/settings", lambda: {"control_net_unit_count": MAX_UNITS}, methods=["GET"])
        api.add_api_route("/controlnet/detect", self.detect, methods=["POST"])

    def detect(self, body: DetectRequest) -> dict[str, Any]:
        return detect(body, self.annotator_folders)

    def preview(self, picture: Image.Image, module: str, resolution: float, a: float, b: float) -> Image.Image:
        """The page's "Preview" button: the preprocessor on the control image (annotators loaded for this call)."""
        session = AnnotatorSession(self.annotator_folders, device=_annotator_device())
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
        if len(raw) > MAX_UNITS:
            raise UserError(f"ControlNet: at most {MAX_UNITS} units, got {len(raw)}.")
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
            with self.models.hold(ctx, unit.model_path) as net:
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
        params = {f"ControlNet {index}": unit.infotext() for index, unit in ctx.args.get("active", ())}
        if params:
            ctx.infotext = with_infotext_params(ctx.infotext, params)


class NotAvailable(UserError):
    """A preprocessor the A1111 extension has and this one does not (A1111 answers 422 too)."""

    http_status = 422


class DetectRequest(BaseModel):
    """`POST /controlnet/detect`, A1111's body (thresholds -1: the preprocessor's default)."""

    controlnet_module: str = "none"
    controlnet_input_images: list[str] = []
    controlnet_processor_res: int = 512
    controlnet_threshold_a: float = -1
    controlnet_threshold_b: float = -1
    controlnet_masks: list[str] = []


def detect(body: DetectRequest, folders: AnnotatorFolders | None = None) -> dict[str, Any]:
    """The preprocessor's output for each picture, as base64 PNGs (A1111's `{"images": [...], "info": "Success"}`);
    `controlnet_masks` (one per picture) are inpaint_only's masks. Annotator models are loaded once for the call."""
    preprocessor = find(body.controlnet_module)
    if preprocessor is None and not ip_adapter.is_module(body.controlnet_module):
        raise NotAvailable(f"ControlNet: preprocessor {body.controlnet_module!r} is not available; available: "
                           f"{', '.join(MODULES)}.")
    if not body.controlnet_input_images:
        raise NotAvailable("ControlNet: no image selected (controlnet_input_images is empty).")
    masks_needed = preprocessor is not None and preprocessor.name == "inpaint_only"
    if masks_needed and len(body.controlnet_masks) != len(body.controlnet_input_images):
        raise NotAvailable("ControlNet: preprocessor inpaint_only requires `controlnet_masks`, one per image.")
    session = AnnotatorSession(folders or AnnotatorFolders(), device=_annotator_device())
    images = []
    for index, data in enumerate(body.controlnet_input_images):
        picture = decode_picture(data)
        if picture is None:
            raise NotAvailable("ControlNet: an entry of controlnet_input_images is empty.")
        mask = decode_picture(body.controlnet_masks[index]) if index < len(body.controlnet_masks) else None
        result = preprocess(picture, body.controlnet_module, body.controlnet_processor_res,
                            body.controlnet_threshold_a, body.controlnet_threshold_b,
                            Extras(mask=mask, annotators=session))
        buffer = io.BytesIO()
        result.save(buffer, format="PNG")
        images.append(base64.b64encode(buffer.getvalue()).decode())
    session.release()
    return {"images": images, "info": "Success"}


def _annotator_device() -> str:
    """Where detect and the page's preview run annotators: the GPU when there is one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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
            state.set_data_dir(Path(builder.data_dir))
        return {"units": page.build(builder, MAX_UNITS, list(MODULES), state.models.titles, state.preview)}

    paste = InfotextPaste(("ControlNet *",), lambda ctx: read_pasted(ctx, MAX_UNITS, state.models.titles))
    ext.add_script(TITLE, ui=ui, always_on=True, positional=positional, paste=paste)
    for axis in plot_axes(state.models.find, state.models.titles, parse_unit, lambda: list(MODULES)):
        ext.add_plot_axis(axis)
    ext.on(Hook.APP_STARTED, state.app_started)
    ext.on(Hook.BEFORE_JOB, state.before_job)
    ext.on(Hook.UNET_CALL, state.unet_call)
    ext.on(Hook.AFTER_IMAGE, state.after_image)
