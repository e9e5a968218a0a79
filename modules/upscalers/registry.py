"""The upscalers by A1111's names: `None`, `Lanczos`, `Nearest` (Pillow) and the `Latent ...` modes.

A name is matched case-insensitively. Image upscalers follow A1111's `images.resize_image` (mode "just resize"):
`None` is one Lanczos resize to the target; `Lanczos` and `Nearest` enlarge by the scale (to a multiple of 8)
and finish with a Lanczos resize to the exact target. Latent modes resize the latents with
`torch.nn.functional.interpolate` in A1111's mode and antialias. Any other name is a model file in A1111's upscaler
folders (`models/ESRGAN`, `RealESRGAN`, ...), named by its stem: a `ModelUpscaler` enlarges by the network's own
scale in passes as A1111 does (`modules.upscalers.model_files` loads and runs it with spandrel), holding the network
through the model manager's cache for the call only. Files that cannot be used are listed by `broken()` with why.
"""

from __future__ import annotations

import logging
import re
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Mapping, Union

from PIL import Image

from modules.errors import InvalidRequest

if TYPE_CHECKING:  # torch, spandrel (and torchvision) load on first use, not at start-up
    import torch
    from spandrel import ImageModelDescriptor

    from modules.upscalers.model_files import Probe

log = logging.getLogger(__name__)

UpscalerKind = Literal["none", "image", "latent", "model"]

MODEL_FOLDERS = ("ESRGAN", "RealESRGAN", "SwinIR", "ScuNET", "DAT", "HAT")
"""A1111's folders (under `models/`) that hold upscaler model files."""
MODEL_EXTENSIONS = (".pth", ".pt", ".safetensors", ".ckpt")
DEFAULT_LATENT = "Latent"


def _never() -> bool:
    return False


@dataclass(frozen=True)
class UpscaleContext:
    """How one image upscale runs: tiles of `tile` pixels with `overlap` pixels of context (A1111's `ESRGAN_tile`,
    `ESRGAN_tile_overlap`; 0 = whole image), `should_stop` checked between tiles, `on_progress(done, total)`.
    Built-in upscalers ignore it; model upscalers use all of it."""

    tile: int = 192
    overlap: int = 8
    should_stop: Callable[[], bool] = _never
    on_progress: Callable[[int, int], None] | None = None


@dataclass(frozen=True)
class Upscaler:
    """One built-in upscaler: a Pillow filter (`resample`) or a latent interpolation (`mode`, `antialias`)."""

    name: str
    kind: UpscalerKind
    resample: Image.Resampling | None = None
    mode: str = ""
    antialias: bool = False
    scale: float = 4.0  # what A1111 lists for its built-in upscalers

    @property
    def is_latent(self) -> bool:
        return self.kind == "latent"

    def upscale_image(self, image: Image.Image, width: int, height: int,
                      context: UpscaleContext | None = None) -> Image.Image:
        """`image` at `width` x `height`, as A1111's `resize_image(0, image, width, height, upscaler_name)`."""
        if self.kind == "none" or self.resample is None:
            return image.resize((width, height), resample=Image.Resampling.LANCZOS)
        return resize_with(image, width, height, self._one_pass)

    def upscale_by(self, image: Image.Image, scale: float, context: UpscaleContext | None = None) -> Image.Image:
        """A1111's `Upscaler.upscale(img, scale)` (`enlarge`); `None` makes no pass, only the final resize."""
        if self.is_latent:
            raise ValueError(f"{self.name} is a latent upscaler: it resizes latents, not pictures")
        return enlarge(image, scale, self._one_pass)

    def _one_pass(self, picture: Image.Image, scale: float) -> Image.Image:
        if self.kind == "none" or self.resample is None:
            return picture
        return picture.resize((int(picture.width * scale), int(picture.height * scale)), resample=self.resample)

    def upscale_latents(self, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, C, h, w) latents resized to (B, C, `height`, `width`) with A1111's interpolation for this mode."""
        import torch  # not at start-up: the registry is built with the App

        if not self.is_latent:
            raise ValueError(f"{self.name} is not a latent upscaler")
        return torch.nn.functional.interpolate(latents, size=(height, width), mode=self.mode,
                                               antialias=self.antialias)


_SCALE_IN_NAME = re.compile(r"(?:^|[^a-z0-9])(?:x([1-8])|([1-8])x)(?:[^a-z0-9]|$|plus)", re.IGNORECASE)


def scale_from_name(stem: str, default: int = 4) -> int:
    """The scale a file name announces ("4x_foolhardy_Remacri", "RealESRGAN_x4plus", "2x-AnimeSharpV4"), else
    `default` (A1111 lists model upscalers at 4 until one is loaded)."""
    match = _SCALE_IN_NAME.search(stem)
    if match is None:
        return default
    return int(match.group(1) or match.group(2))


OnePass = Callable[[Image.Image, float], Image.Image]
"""One enlargement pass of an upscaler: (picture, wanted scale) -> the picture enlarged (a model: by its own scale)."""


def resize_with(image: Image.Image, width: int, height: int, one_pass: OnePass) -> Image.Image:
    """A1111's `resize_image(0, ...)` with an upscaler: when `image` must grow, `enlarge`; then Lanczos to exactly
    `width` x `height`."""
    scale = max(width / image.width, height / image.height)
    if scale > 1.0:
        image = enlarge(image, scale, one_pass)
    if image.size != (width, height):
        image = image.resize((width, height), resample=Image.Resampling.LANCZOS)
    return image


def enlarge(image: Image.Image, scale: float, one_pass: OnePass) -> Image.Image:
    """A1111's `Upscaler.upscale`: up to three passes until the picture covers `scale` x, then Lanczos to that size
    rounded down to a multiple of 8."""
    dest_w, dest_h = int((image.width * scale) // 8 * 8), int((image.height * scale) // 8 * 8)
    for attempt in range(3):
        if image.width >= dest_w and image.height >= dest_h and (attempt > 0 or scale != 1):
            break
        before = image.size
        image = one_pass(image, scale)
        if before == image.size:
            break
    if image.size != (dest_w, dest_h):
        image = image.resize((dest_w, dest_h), resample=Image.Resampling.LANCZOS)
    return image


ModelHolder = Callable[[Path], "AbstractContextManager[ImageModelDescriptor]"]
"""Lends the loaded network of a file for a `with` block (the model manager's `hold_upscaler`)."""


@dataclass(frozen=True)
class ModelUpscaler:
    """An upscaler model file: `name` is its stem, `folder` the A1111 folder it was found in (A1111's
    `model_name`), `scale` the scale its name announces until the network has been loaded, then its own."""

    name: str
    path: Path
    folder: str
    scale: float
    hold: ModelHolder = field(compare=False, repr=False)
    kind: UpscalerKind = "model"

    @property
    def is_latent(self) -> bool:
        return False

    def upscale_image(self, image: Image.Image, width: int, height: int,
                      context: UpscaleContext | None = None) -> Image.Image:
        """`image` at `width` x `height`: model passes as A1111's `Upscaler.upscale`, then Lanczos to the size.
        Raises `modules.errors.Interrupted` when `context.should_stop()` turns true between tiles."""
        context = context or UpscaleContext()
        if max(width / image.width, height / image.height) <= 1.0:
            return image.resize((width, height), resample=Image.Resampling.LANCZOS)
        from modules.upscalers.model_files import run_model

        with self.hold(self.path) as model:
            return resize_with(image, width, height, lambda picture, _scale: run_model(
                model, picture, context.tile, context.overlap, context.should_stop, context.on_progress))

    def upscale_by(self, image: Image.Image, scale: float, context: UpscaleContext | None = None) -> Image.Image:
        """A1111's `Upscaler.upscale(img, scale)`: model passes until the picture covers `scale` x (`enlarge`).
        Raises `modules.errors.Interrupted` when `context.should_stop()` turns true between tiles."""
        context = context or UpscaleContext()
        from modules.upscalers.model_files import run_model

        with self.hold(self.path) as model:
            return enlarge(image, scale, lambda picture, _scale: run_model(
                model, picture, context.tile, context.overlap, context.should_stop, context.on_progress))


AnyUpscaler = Union[Upscaler, ModelUpscaler]


BUILT_IN: tuple[Upscaler, ...] = (
    Upscaler("None", "none"),
    Upscaler("Lanczos", "image", Image.Resampling.LANCZOS),
    Upscaler("Nearest", "image", Image.Resampling.NEAREST),
    Upscaler("Latent", "latent", mode="bilinear"),
    Upscaler("Latent (antialiased)", "latent", mode="bilinear", antialias=True),
    Upscaler("Latent (bicubic)", "latent", mode="bicubic"),
    Upscaler("Latent (bicubic antialiased)", "latent", mode="bicubic", antialias=True),
    Upscaler("Latent (nearest)", "latent", mode="nearest"),
    Upscaler("Latent (nearest-exact)", "latent", mode="nearest-exact"),
)


@dataclass(frozen=True)
class BrokenFile:
    """A file in an upscaler folder that cannot be used, and why (shown in the Extras tab and in errors)."""

    name: str
    path: Path
    reason: str


def _no_holder(path: Path) -> "AbstractContextManager[ImageModelDescriptor]":
    raise InvalidRequest(f"Upscaler model {path.name} cannot be loaded here: no model manager.")


class UpscalerRegistry:
    """Finds upscalers by name: the built-ins, and the model files under `models_dir` (None: built-ins only).

    Files are identified once per (size, modification time) with `probe_file` and re-checked on every listing, so a
    file dropped into a folder is usable without a restart. `hold` lends a loaded network (the model manager's cache).
    """

    def __init__(self, models_dir: Path | None = None, hold: ModelHolder = _no_holder,
                 folders: Mapping[str, Path] | None = None) -> None:
        self.models_dir = models_dir
        self.folders = dict(folders or {})
        """Folders kept outside `models_dir`, by A1111 folder name (`--esrgan-models-path` and the like)."""
        self.hold = hold
        self._probes: dict[tuple[Path, int, int], "Probe"] = {}
        self._scales: dict[Path, float] = {}
        self._lock = threading.Lock()

    def image_upscalers(self) -> tuple[AnyUpscaler, ...]:
        """The rows of `/sdapi/v1/upscalers` (A1111 lists only image upscalers there): the built-ins, then the
        usable model files by name."""
        built_in: tuple[AnyUpscaler, ...] = tuple(u for u in BUILT_IN if not u.is_latent)
        return built_in + self.model_upscalers()

    def latent_modes(self) -> tuple[Upscaler, ...]:
        return tuple(upscaler for upscaler in BUILT_IN if upscaler.is_latent)

    def names(self) -> tuple[str, ...]:
        """Every usable name: latent modes first, then the image upscalers (A1111's hires dropdown order)."""
        return tuple(u.name for u in self.latent_modes()) + tuple(u.name for u in self.image_upscalers())

    def model_upscalers(self) -> tuple[ModelUpscaler, ...]:
        """The usable model files, sorted by name (case-insensitive)."""
        usable = [self._model(path, folder) for path, folder, probe in self._scan() if probe.error is None]
        return tuple(sorted(usable, key=lambda u: u.name.lower()))

    def broken(self) -> tuple[BrokenFile, ...]:
        """The files in the upscaler folders that cannot be used, with the reason."""
        return tuple(BrokenFile(path.stem, path, probe.error) for path, _, probe in self._scan()
                     if probe.error is not None)

    def find(self, name: str | None) -> AnyUpscaler:
        """The upscaler called `name` (any case; empty = "Latent"); InvalidRequest for anything else."""
        wanted = (name or DEFAULT_LATENT).strip().lower()
        for upscaler in BUILT_IN:
            if upscaler.name.lower() == wanted:
                return upscaler
        for path, folder, probe in self._scan():
            if path.stem.lower() == wanted:
                if probe.error is not None:
                    raise InvalidRequest(f"Upscaler {name!r} cannot be used: {probe.error}")
                return self._model(path, folder)
        raise InvalidRequest(f"Unknown upscaler {name!r}: not built in, and no model file of that name in "
                             f"{', '.join(str(f) for f in self.model_folders())}. Available: "
                             f"{', '.join(self.names())}.")

    def find_image(self, name: str | None, what: str = "This") -> AnyUpscaler:
        """Like `find` (empty = "None"), for a picture: a latent mode is an InvalidRequest (`what` names the field
        or feature that asked, for the message)."""
        upscaler = self.find(name or "None")
        if upscaler.is_latent:
            raise InvalidRequest(f"{what}: '{upscaler.name}' is a latent upscaler, which resizes latents in Hires. fix "
                                 "only; choose an image upscaler: "
                                 f"{', '.join(u.name for u in self.image_upscalers())}.")
        return upscaler

    def model_folders(self) -> tuple[Path, ...]:
        return tuple(path for _, path in self._named_folders())

    def _named_folders(self) -> tuple[tuple[str, Path], ...]:
        base = self.models_dir if self.models_dir is not None else Path("models")
        return tuple((folder, self.folders.get(folder, base / folder)) for folder in MODEL_FOLDERS)

    def record_scale(self, path: Path, scale: float) -> None:
        """The network's own scale, learnt when it was loaded (listed from then on)."""
        with self._lock:
            self._scales[Path(path)] = float(scale)

    def _model(self, path: Path, folder: str) -> ModelUpscaler:
        with self._lock:
            scale = self._scales.get(path, float(scale_from_name(path.stem)))
        return ModelUpscaler(path.stem, path, folder, scale, self.hold)

    def _scan(self) -> list[tuple[Path, str, "Probe"]]:
        """(file, A1111 folder, probe) for each model file; a stem already seen in an earlier folder is skipped."""
        if self.models_dir is None:
            return []
        found: list[tuple[Path, str, "Probe"]] = []
        seen: set[str] = set()
        for name, folder in self._named_folders():
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
                if path.suffix.lower() not in MODEL_EXTENSIONS or not path.is_file():
                    continue
                if path.stem.lower() in seen:
                    log.warning("Upscaler %s ignored: a file of the same name was found first", path)
                    continue
                seen.add(path.stem.lower())
                found.append((path, name, self._probe(path)))
        return found

    def _probe(self, path: Path) -> "Probe":
        stat = path.stat()
        key = (path, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._probes.get(key)
        if cached is None:
            from modules.upscalers.model_files import probe_file

            cached = probe_file(path)
            if cached.error is not None:
                log.warning("Upscaler file not usable: %s", cached.error)
            with self._lock:
                self._probes[key] = cached
        return cached
