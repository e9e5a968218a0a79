"""The upscalers by A1111's names: `None`, `Lanczos`, `Nearest` (Pillow) and the `Latent ...` modes.

A name is matched case-insensitively. Image upscalers follow A1111's `images.resize_image` (mode "just resize"):
`None` is one Lanczos resize to the target; `Lanczos` and `Nearest` enlarge by the scale (to a multiple of 8)
and finish with a Lanczos resize to the exact target. Latent modes resize the latents with
`torch.nn.functional.interpolate` in A1111's mode and antialias. A name that is not built in is looked up as a
model file (by stem) in A1111's upscaler folders; loading such files is not available yet, so that is a clear
`InvalidRequest` either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch
from PIL import Image

from modules.errors import InvalidRequest

UpscalerKind = Literal["none", "image", "latent"]

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
        scale = max(width / image.width, height / image.height)
        if scale > 1.0:
            image = self._enlarge(image, scale, self.resample)
        if image.size != (width, height):
            image = image.resize((width, height), resample=Image.Resampling.LANCZOS)
        return image

    @staticmethod
    def _enlarge(image: Image.Image, scale: float, resample: Image.Resampling) -> Image.Image:
        """A1111's `Upscaler.upscale`: up to three passes by `scale`, then Lanczos to a multiple of 8."""
        dest_w, dest_h = int((image.width * scale) // 8 * 8), int((image.height * scale) // 8 * 8)
        for attempt in range(3):
            if image.width >= dest_w and image.height >= dest_h and (attempt > 0 or scale != 1):
                break
            before = image.size
            image = image.resize((int(image.width * scale), int(image.height * scale)), resample=resample)
            if before == image.size:
                break
        if image.size != (dest_w, dest_h):
            image = image.resize((dest_w, dest_h), resample=Image.Resampling.LANCZOS)
        return image

    def upscale_latents(self, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, C, h, w) latents resized to (B, C, `height`, `width`) with A1111's interpolation for this mode."""
        if not self.is_latent:
            raise ValueError(f"{self.name} is not a latent upscaler")
        return torch.nn.functional.interpolate(latents, size=(height, width), mode=self.mode,
                                               antialias=self.antialias)


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
class UpscalerRegistry:
    """Finds upscalers by name; `models_dir` is the data directory's `models/` (None: built-ins only)."""

    models_dir: Path | None = None

    def image_upscalers(self) -> tuple[Upscaler, ...]:
        """The rows of `/sdapi/v1/upscalers` (A1111 lists only image upscalers there)."""
        return tuple(upscaler for upscaler in BUILT_IN if not upscaler.is_latent)

    def latent_modes(self) -> tuple[Upscaler, ...]:
        return tuple(upscaler for upscaler in BUILT_IN if upscaler.is_latent)

    def names(self) -> tuple[str, ...]:
        """Every usable name: latent modes first, then the image upscalers (A1111's hires dropdown order)."""
        return tuple(u.name for u in self.latent_modes()) + tuple(u.name for u in self.image_upscalers())

    def find(self, name: str | None) -> Upscaler:
        """The upscaler called `name` (any case; empty = "Latent"); InvalidRequest for anything else."""
        wanted = (name or DEFAULT_LATENT).strip().lower()
        for upscaler in BUILT_IN:
            if upscaler.name.lower() == wanted:
                return upscaler
        model = self._model_file(wanted)
        if model is not None:
            raise InvalidRequest(f"Upscaler {name!r} is a model file ({model}); upscaler models are not available "
                                 f"yet. Use one of: {', '.join(self.names())}.")
        raise InvalidRequest(f"Unknown upscaler {name!r}: not built in ({', '.join(self.names())}) and no model "
                             f"file of that name in {', '.join(str(f) for f in self.model_folders())}.")

    def model_folders(self) -> tuple[Path, ...]:
        if self.models_dir is None:
            return tuple(Path("models") / folder for folder in MODEL_FOLDERS)
        return tuple(self.models_dir / folder for folder in MODEL_FOLDERS)

    def _model_file(self, stem: str) -> Path | None:
        if self.models_dir is None:
            return None
        for folder in self.model_folders():
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() in MODEL_EXTENSIONS and path.stem.lower() == stem:
                    return path
        return None
