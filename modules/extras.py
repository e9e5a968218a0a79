"""The Extras tab's upscaling (A1111's postprocessing "Upscale"), for the tab and `/sdapi/v1/extra-*-image(s)`.

For each picture: "Scale by" enlarges by `upscaling_resize`; "Scale to" enlarges by the factor that covers
`upscaling_resize_w` x `upscaling_resize_h` and, with `upscaling_crop`, crops the centre to exactly that size (as
A1111 does). Upscaler 1 always runs; Upscaler 2, when set and its visibility is above 0, upscales the same picture
and the two are blended (`Image.blend`, 0 = only the first). Upscalers are the app's registry (`Lanczos`,
`Nearest`, `None` and the model files; latent modes are for hires fix only). Each result keeps the source
picture's `parameters` infotext and gets A1111's postprocessing text (`Postprocess upscale by: 2, Postprocess
upscaler: Lanczos`), also written to the PNG's `extras` chunk when saved.

`ExtrasService.run` is what the job queue runs (progress per picture and per tile, interrupt between pictures and
tiles); the UI and the API submit it through `App.submit_extras`.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from PIL import Image

from modules import images, infotext
from modules.core.masks import flatten
from modules.errors import Interrupted, InvalidRequest
from modules.types import ProgressEvent
from modules.upscalers.registry import AnyUpscaler, UpscaleContext, UpscalerRegistry

if TYPE_CHECKING:
    from modules.jobs.executor import JobContext
    from modules.paths import DataPaths
    from modules.settings import SettingsStore

log = logging.getLogger(__name__)

SCALE_BY, SCALE_TO = 0, 1
MAX_SCALE = 8.0
MAX_SIDE = 8192


@dataclass(frozen=True)
class ExtrasRequest:
    """A1111's `ExtrasSingleImageRequest` upscaling fields, for one or more pictures (`names`: file names, for
    saving with their original names)."""

    images: tuple[Image.Image, ...]
    names: tuple[str, ...] = ()
    resize_mode: int = SCALE_BY
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0.0
    save: bool = False
    output_dir: Path | None = None
    """Where to save (Batch from Directory's output folder); None: `outdir_extras_samples`."""


@dataclass(frozen=True)
class ExtrasResult:
    """The upscaled pictures (each carrying `parameters` and `extras` in `.info`) and their postprocessing texts."""

    images: tuple[Image.Image, ...]
    infotexts: tuple[str, ...]
    interrupted: bool = False
    saved: tuple[str, ...] = field(default_factory=tuple)

    def html_info(self) -> str:
        """A1111's `html_info`: the last picture's postprocessing text as an HTML paragraph ("" for none)."""
        return f"<p>{html.escape(self.infotexts[-1])}</p>" if self.infotexts else ""


def validate(request: ExtrasRequest) -> None:
    """InvalidRequest for fields out of range."""
    if not request.images:
        raise InvalidRequest("No image to upscale: send an image.")
    if request.resize_mode not in (SCALE_BY, SCALE_TO):
        raise InvalidRequest(f"resize_mode must be 0 (scale by) or 1 (scale to), got {request.resize_mode}")
    if request.resize_mode == SCALE_BY and not 0 < request.upscaling_resize <= MAX_SCALE:
        raise InvalidRequest(f"upscaling_resize must be above 0 and at most {MAX_SCALE}, "
                             f"got {request.upscaling_resize}")
    if request.resize_mode == SCALE_TO:
        for name, value in (("upscaling_resize_w", request.upscaling_resize_w),
                            ("upscaling_resize_h", request.upscaling_resize_h)):
            if not 1 <= value <= MAX_SIDE:
                raise InvalidRequest(f"{name} must be between 1 and {MAX_SIDE}, got {value}")
    if not 0.0 <= request.extras_upscaler_2_visibility <= 1.0:
        raise InvalidRequest("extras_upscaler_2_visibility must be between 0 and 1, got "
                             f"{request.extras_upscaler_2_visibility}")


def scale_factor(request: ExtrasRequest, image: Image.Image) -> float:
    """The enlargement of `image`: `upscaling_resize`, or the factor that covers the "Scale to" size."""
    if request.resize_mode == SCALE_BY:
        return request.upscaling_resize
    return max(request.upscaling_resize_w / image.width, request.upscaling_resize_h / image.height)


def _crop_centre(image: Image.Image, width: int, height: int) -> Image.Image:
    """A1111's crop to fit: the picture pasted centred on a canvas of exactly `width` x `height`."""
    canvas = Image.new("RGB", (width, height))
    canvas.paste(image, box=(width // 2 - image.width // 2, height // 2 - image.height // 2))
    return canvas


def postprocess_text(request: ExtrasRequest, first: AnyUpscaler, second: AnyUpscaler | None,
                     cropped: tuple[int, int] | None) -> str:
    """A1111's postprocessing infotext of an upscale."""
    params: dict[str, Any] = {}
    if request.resize_mode == SCALE_BY:
        params["Postprocess upscale by"] = f"{request.upscaling_resize:g}"
    else:
        params["Postprocess upscale to"] = f"{request.upscaling_resize_w}x{request.upscaling_resize_h}"
        if cropped is not None:
            params["Postprocess crop to"] = f"{cropped[0]}x{cropped[1]}"
    params["Postprocess upscaler"] = first.name
    if second is not None:
        params["Postprocess upscaler 2"] = second.name
    return infotext.build("", "", params)  # A1111 writes it as a parameter line (values quoted where needed)


def upscale_picture(request: ExtrasRequest, image: Image.Image, registry: UpscalerRegistry,
                    context: UpscaleContext | None = None) -> tuple[Image.Image, str]:
    """One picture upscaled as the request says, and its postprocessing text."""
    source = flatten(image, "#ffffff") if image.mode != "RGB" else image
    first = registry.find_image(request.upscaler_1, "upscaler_1")
    second_name = request.upscaler_2 or "None"
    second = None
    if second_name.lower() != "none" and request.extras_upscaler_2_visibility > 0:
        second = registry.find_image(second_name, "upscaler_2")
    factor = scale_factor(request, source)
    result = first.upscale_by(source, factor, context)
    if second is not None:
        other = second.upscale_by(source, factor, context)
        if other.size != result.size:
            other = other.resize(result.size, resample=Image.Resampling.LANCZOS)
        result = Image.blend(result.convert("RGB"), other.convert("RGB"), request.extras_upscaler_2_visibility)
    cropped = None
    if request.resize_mode == SCALE_TO and request.upscaling_crop:
        cropped = (request.upscaling_resize_w, request.upscaling_resize_h)
        result = _crop_centre(result, *cropped)
    return result.convert("RGB"), postprocess_text(request, first, second, cropped)


@dataclass
class ExtrasService:
    """Runs an `ExtrasRequest` on the job queue's worker (a `CallableWork`), with the app's upscalers."""

    upscalers: UpscalerRegistry
    settings: "SettingsStore"
    paths: "DataPaths"
    on_saved: Callable[[Path], None] | None = None
    """Called with every file saved (the App's gallery index)."""

    def run(self, request: ExtrasRequest, ctx: "JobContext") -> ExtrasResult:
        validate(request)
        options = self.settings.get()
        count = len(request.images)
        pictures: list[Image.Image] = []
        texts: list[str] = []
        saved: list[str] = []
        for index, image in enumerate(request.images):
            if ctx.cancel.interrupted:
                break
            ctx.report(ProgressEvent(0, 1, index, count, None, f"Upscaling picture {index + 1} of {count}"))
            context = UpscaleContext(int(options["ESRGAN_tile"]), int(options["ESRGAN_tile_overlap"]),
                                     ctx.cancel.should_stop_batch, _tile_progress(ctx, index, count))
            try:
                picture, text = upscale_picture(request, image, self.upscalers, context)
            except Interrupted:
                break
            picture.info["parameters"] = image.info.get("parameters", "")
            picture.info["extras"] = text
            if not picture.info["parameters"]:
                del picture.info["parameters"]
            pictures.append(picture)
            texts.append(text)
            if request.save:
                name = request.names[index] if index < len(request.names) else ""
                saved.append(str(self._save(picture, text, name, options, request.output_dir)))
        return ExtrasResult(tuple(pictures), tuple(texts), interrupted=ctx.cancel.interrupted, saved=tuple(saved))

    def _save(self, picture: Image.Image, text: str, name: str, options: Any, output_dir: Path | None) -> Path:
        """Save into `outdir_extras_samples` (no date folder, as A1111), with the source's `parameters` and the
        `extras` text; batch pictures keep their file name with `use_original_name_batch`."""
        folder = output_dir or Path(str(options["outdir_extras_samples"]) or "outputs/extras-images")
        folder = folder if folder.is_absolute() else self.paths.data_dir / folder
        basename = Path(name).stem if name and bool(options["use_original_name_batch"]) else ""
        path = images.save_image(picture, folder, seed=0, infotext=picture.info.get("parameters"),
                                 extension=str(options["samples_format"]), basename_pattern=basename,
                                 jpeg_quality=int(options["jpeg_quality"]), extra_text={"extras": text},
                                 lossless=bool(options["webp_lossless"]),
                                 text_file=text if bool(options["save_txt"]) else None)
        if self.on_saved is not None:
            self.on_saved(path)
        return path


def _tile_progress(ctx: "JobContext", index: int, count: int) -> Callable[[int, int], None]:
    def on_tile(done: int, total: int) -> None:
        ctx.report(ProgressEvent(done, total, index, count, None, f"Upscaling picture {index + 1} of {count}: "
                                                                   f"tile {done} of {total}"))
    return on_tile

