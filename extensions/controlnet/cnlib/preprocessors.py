"""The ControlNet preprocessors that need no weights, as the A1111 `sd-webui-controlnet` extension runs them.

Each takes an RGB picture (transparent parts over white, A1111's `HWC3`), the processor resolution and the two
thresholds, and returns the detected map (RGB). The ones with a resolution resize the picture so that its short side
is that resolution, pad it to a multiple of 64 (edge pixels, A1111's `resize_image_with_pad`), run, and cut the
padding off again:

- `none`: the picture as it is; `invert`: 255 - picture (A1111's "invert (from white bg & black line)");
- `canny`: OpenCV's Canny edges, thresholds low/high = threshold a/b (defaults 100/200); needs
  `opencv-python-headless` (A1111 uses OpenCV too: the same edges);
- `threshold`: white where every channel is above threshold a (default 127), else black;
- `scribble_xdog`: A1111's XDoG scribble (difference of two Gaussian blurs, threshold a, default 32); needs OpenCV;
- `tile_resample`: the picture made smaller by threshold a ("Down Sampling Rate", 1 to 8, default 1 = unchanged).

Resizing uses OpenCV as A1111 does (cubic up, area down) when it is installed, else Pillow's bicubic/box filters
(pixels may then differ slightly from A1111's). OpenCV is imported on first use only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PIL import Image

from modules.extensions.api import UserError

OPENCV_HINT = "pip install opencv-python-headless"
RESOLUTION = "Preprocessor Resolution"


@dataclass(frozen=True)
class Slider:
    """A preprocessor's parameter as the A1111 extension describes it (`/controlnet/module_list` module_detail)."""

    name: str
    value: float
    minimum: float
    maximum: float
    step: float = 1.0

    def detail(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "min": self.minimum, "max": self.maximum, "step": self.step}


Run = Callable[[np.ndarray, int, float, float], np.ndarray]


@dataclass(frozen=True)
class Preprocessor:
    """`run(rgb uint8 HxWx3, resolution, threshold_a, threshold_b) -> uint8 HxWx3`; `resolution`/`a`/`b` are its
    sliders (None: not used), `needs_opencv` whether it runs only with OpenCV installed."""

    name: str
    run: Run
    resolution: Slider | None = None
    a: Slider | None = None
    b: Slider | None = None
    needs_opencv: bool = False

    def sliders(self) -> list[dict[str, Any] | None]:
        """A1111's `sliders` list: resolution, threshold a, threshold b (a missing one is None, trailing ones cut)."""
        rows = [slider.detail() if slider else None for slider in (self.resolution, self.a, self.b)]
        while rows and rows[-1] is None:
            rows.pop()
        return rows

    def settings(self, resolution: float, a: float, b: float) -> tuple[int, float, float]:
        """The values a run uses: -1 (A1111's "not sent") or a missing slider's value becomes the default."""
        def pick(value: float, slider: Slider | None) -> float:
            return float(slider.value) if slider is not None and (value is None or value < 0) else float(value)

        res = int(pick(resolution, self.resolution)) if self.resolution is not None else 512
        return max(res, 64), pick(a, self.a), pick(b, self.b)

    def __call__(self, picture: Image.Image, resolution: float = -1, a: float = -1, b: float = -1) -> Image.Image:
        """The detected map of a picture; UserError when the preprocessor needs OpenCV and it is missing."""
        if self.needs_opencv:
            opencv(self.name)
        res, a, b = self.settings(resolution, a, b)
        return Image.fromarray(hwc3(self.run(rgb_array(picture), res, a, b)))


def opencv(what: str) -> Any:
    """The cv2 module, or a UserError naming the package to install."""
    try:
        import cv2
    except ImportError:
        raise UserError(f"ControlNet: the {what} preprocessor needs OpenCV: {OPENCV_HINT}") from None
    return cv2


def _cv2_or_none() -> Any:
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def rgb_array(picture: Image.Image) -> np.ndarray:
    """A1111's `HWC3` of a picture: RGB uint8, transparent parts blended over white."""
    if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
        rgba = np.asarray(picture.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        return (rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).clip(0, 255).astype(np.uint8)
    return np.asarray(picture.convert("RGB"), dtype=np.uint8).copy()


def hwc3(array: np.ndarray) -> np.ndarray:
    """A map as RGB uint8 (a one-channel map repeated)."""
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[..., :3].astype(np.uint8))


def resize(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """cv2.resize with INTER_CUBIC when enlarging, INTER_AREA when reducing (Pillow's bicubic/box without OpenCV)."""
    if (array.shape[1], array.shape[0]) == (width, height):
        return array
    larger = width * height > array.shape[0] * array.shape[1]
    cv2 = _cv2_or_none()
    if cv2 is not None:
        return np.asarray(cv2.resize(array, (width, height),
                                     interpolation=cv2.INTER_CUBIC if larger else cv2.INTER_AREA))
    method = Image.Resampling.BICUBIC if larger else Image.Resampling.BOX
    return np.asarray(Image.fromarray(array).resize((width, height), method))


def with_resolution(run: Callable[[np.ndarray, float, float], np.ndarray]) -> Run:
    """A1111's `resize_image_with_pad` around `run`: short side to the resolution, edges padded to a multiple of 64,
    the padding cut off the result."""
    def wrapped(array: np.ndarray, resolution: int, a: float, b: float) -> np.ndarray:
        height, width = array.shape[:2]
        k = float(resolution) / float(min(height, width))
        target_h, target_w = int(np.round(height * k)), int(np.round(width * k))
        scaled = resize(array, target_w, target_h)
        pad_h, pad_w = -target_h % 64, -target_w % 64
        padded = np.pad(scaled, [[0, pad_h], [0, pad_w], [0, 0]], mode="edge")
        return hwc3(run(padded, a, b))[:target_h, :target_w]
    return wrapped


def _none(array: np.ndarray, resolution: int, a: float, b: float) -> np.ndarray:
    return array


def _invert(array: np.ndarray, resolution: int, a: float, b: float) -> np.ndarray:
    return 255 - array


def _canny(array: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.asarray(opencv("canny").Canny(array, low, high))


def _threshold(array: np.ndarray, a: float, b: float) -> np.ndarray:
    result = np.zeros_like(array)
    result[np.min(array, axis=2) > a] = 255
    return result


def _scribble_xdog(array: np.ndarray, a: float, b: float) -> np.ndarray:
    cv2 = opencv("scribble_xdog")
    fine = cv2.GaussianBlur(array.astype(np.float32), (0, 0), 0.5)
    coarse = cv2.GaussianBlur(array.astype(np.float32), (0, 0), 5.0)
    dog = (255 - np.min(coarse - fine, axis=2)).clip(0, 255).astype(np.uint8)
    result = np.zeros_like(array)
    result[2 * (255 - dog) > a] = 255
    return result


def _tile_resample(array: np.ndarray, resolution: int, a: float, b: float) -> np.ndarray:
    if a < 1.1:
        return array
    height, width = array.shape[:2]
    return resize(array, max(1, int(width / a)), max(1, int(height / a)))


_RES = Slider(RESOLUTION, 512, 64, 2048)

PREPROCESSORS: dict[str, Preprocessor] = {p.name: p for p in (
    Preprocessor("none", _none),
    Preprocessor("invert", _invert),
    Preprocessor("canny", with_resolution(_canny), _RES, Slider("Canny Low Threshold", 100, 1, 255),
                 Slider("Canny High Threshold", 200, 1, 255), needs_opencv=True),
    Preprocessor("threshold", with_resolution(_threshold), _RES, Slider("Binarization Threshold", 127, 0, 255)),
    Preprocessor("scribble_xdog", with_resolution(_scribble_xdog), _RES, Slider("XDoG Threshold", 32, 1, 64),
                 needs_opencv=True),
    Preprocessor("tile_resample", _tile_resample, None, Slider("Down Sampling Rate", 1.0, 1.0, 8.0, 0.01)),
)}
"""The preprocessors by name, in `/controlnet/module_list` order."""

ALIASES = {"invert (from white bg & black line)": "invert"}
"""Other names A1111's clients send (its UI labels)."""


def find(name: str) -> Preprocessor | None:
    key = str(name or "none").strip().lower()
    return PREPROCESSORS.get(ALIASES.get(key, key))


def pixel_perfect_resolution(width: int, height: int, target_width: int, target_height: int,
                             resize_mode: str) -> int:
    """A1111's "Pixel Perfect": the processor resolution at which the map has the generation's own pixel density."""
    k0, k1 = target_height / height, target_width / width
    estimate = (min if resize_mode == "Resize and Fill" else max)(k0, k1) * min(height, width)
    return int(np.round(estimate))
