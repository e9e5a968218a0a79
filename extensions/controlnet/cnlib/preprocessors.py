"""The ControlNet preprocessors, as the A1111 `sd-webui-controlnet` extension runs them (names and sliders as its
`/controlnet/module_list`; its UI labels are accepted as aliases).

Each takes an RGB picture (transparent parts over white, A1111's `HWC3`), the processor resolution, the two
thresholds and `Extras` (seed, mask, annotator session), and returns the detected map (RGB). Most resize the picture
so that its short side is the resolution, pad it to a multiple of 64 (edge pixels, A1111's `resize_image_with_pad`),
run, and cut the padding off again:

- `none`, `invert` (255 - picture), `threshold` (white where every channel is above threshold a), `tile_resample`
  (made smaller by threshold a), `color` (A1111's t2ia_color_grid: the colours of a 64-pixel grid);
- `inpaint_only`: the picture with the mask as alpha (transparent = repaint; the ControlNet gets -1 there);
- OpenCV (`opencv-python-headless`, as A1111 uses it): `canny`, `scribble_xdog`, `lineart_standard` (difference
  of Gaussians), `blur_gaussian` (sigma = threshold a), `shuffle` (a random smooth warp drawn from the seed);
- weights (annotators.py, transformers, local folders only): `depth`, `depth_anything`, `normal_map`,
  `segmentation` and `oneformer_ade20k` (any ADE20K semantic-segmentation model); `openpose` (pose.py: VitPose
  keypoints, people from an optional person detector, drawn as OpenPose's body skeleton; body only: the hand and
  face variants are not offered).

Resizing uses OpenCV as A1111 does (cubic up, area down) when it is installed, else Pillow's bicubic/box filters
(pixels may then differ slightly from A1111's). OpenCV and transformers are imported on first use only.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PIL import Image

from modules.extensions.api import UserError

from .annotators import (
    DEPTH,
    SEGMENTATION,
    AnnotatorFolders,
    AnnotatorSession,
    Weights,
    depth_map,
    normal_map,
    raw_depth,
    segmentation_map,
)
from .pose import VITPOSE, openpose_map

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


@dataclass
class Extras:
    """What some preprocessors use besides the picture and their settings: `seed` (shuffle; None: a random one),
    `mask` (inpaint_only; white = repaint) and `annotators` (the session that loads the weights of depth, normal and
    segmentation; None: they fail with the folder to fill)."""

    seed: int | None = None
    mask: Image.Image | None = None
    annotators: AnnotatorSession | None = None


Run = Callable[[np.ndarray, int, float, float, Extras], np.ndarray]


@dataclass(frozen=True)
class Preprocessor:
    """`run(rgb uint8 HxWx3, resolution, threshold_a, threshold_b, extras) -> uint8 HxWx3` (HxWx4 for
    inpaint_only); `resolution`/`a`/`b` are its sliders (None: not used), `needs_opencv` whether it runs only with
    OpenCV installed, `weights` the annotator weights it needs (None: none)."""

    name: str
    run: Run
    resolution: Slider | None = None
    a: Slider | None = None
    b: Slider | None = None
    needs_opencv: bool = False
    weights: Weights | None = None

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

    def __call__(self, picture: Image.Image, resolution: float = -1, a: float = -1, b: float = -1,
                 extras: Extras | None = None) -> Image.Image:
        """The detected map of a picture (RGB; RGBA for inpaint_only, transparent where masked); UserError when
        the preprocessor needs OpenCV and it is missing, or its weights and they are not there."""
        if self.needs_opencv:
            opencv(self.name)
        res, a, b = self.settings(resolution, a, b)
        result = self.run(rgb_array(picture), res, a, b, extras or Extras())
        if result.ndim == 3 and result.shape[2] == 4:
            return Image.fromarray(np.ascontiguousarray(result.astype(np.uint8)), "RGBA")
        return Image.fromarray(hwc3(result))


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


def resize(array: np.ndarray, width: int, height: int, method: str | None = None) -> np.ndarray:
    """cv2.resize with `method` ("cubic", "area" or "nearest"; default: cubic when enlarging, area when reducing),
    or Pillow's bicubic/box/nearest filters without OpenCV."""
    if (array.shape[1], array.shape[0]) == (width, height):
        return array
    if method is None:
        method = "cubic" if width * height > array.shape[0] * array.shape[1] else "area"
    cv2 = _cv2_or_none()
    if cv2 is not None:
        flags = {"cubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}
        return np.asarray(cv2.resize(array, (width, height), interpolation=flags[method]))
    filters = {"cubic": Image.Resampling.BICUBIC, "area": Image.Resampling.BOX, "nearest": Image.Resampling.NEAREST}
    return np.asarray(Image.fromarray(array).resize((width, height), filters[method]))


def short_side(array: np.ndarray, resolution: int, method: str | None = None) -> np.ndarray:
    """The picture resized so that its short side is `resolution` (A1111's rounding)."""
    height, width = array.shape[:2]
    k = float(resolution) / float(min(height, width))
    return resize(array, int(np.round(width * k)), int(np.round(height * k)), method)


Padded = Callable[[np.ndarray, float, float, Extras], np.ndarray]


def with_resolution(run: Padded) -> Run:
    """A1111's `resize_image_with_pad` around `run`: short side to the resolution, edges padded to a multiple of 64,
    the padding cut off the result."""
    def wrapped(array: np.ndarray, resolution: int, a: float, b: float, extras: Extras) -> np.ndarray:
        scaled = short_side(array, resolution)
        target_h, target_w = scaled.shape[:2]
        pad_h, pad_w = -target_h % 64, -target_w % 64
        padded = np.pad(scaled, [[0, pad_h], [0, pad_w], [0, 0]], mode="edge")
        return hwc3(run(padded, a, b, extras))[:target_h, :target_w]
    return wrapped


def _none(array: np.ndarray, resolution: int, a: float, b: float, extras: Extras) -> np.ndarray:
    return array


def _invert(array: np.ndarray, resolution: int, a: float, b: float, extras: Extras) -> np.ndarray:
    return 255 - array


def _canny(array: np.ndarray, low: float, high: float, extras: Extras) -> np.ndarray:
    return np.asarray(opencv("canny").Canny(array, low, high))


def _threshold(array: np.ndarray, a: float, b: float, extras: Extras) -> np.ndarray:
    result = np.zeros_like(array)
    result[np.min(array, axis=2) > a] = 255
    return result


def _scribble_xdog(array: np.ndarray, a: float, b: float, extras: Extras) -> np.ndarray:
    cv2 = opencv("scribble_xdog")
    fine = cv2.GaussianBlur(array.astype(np.float32), (0, 0), 0.5)
    coarse = cv2.GaussianBlur(array.astype(np.float32), (0, 0), 5.0)
    dog = (255 - np.min(coarse - fine, axis=2)).clip(0, 255).astype(np.uint8)
    result = np.zeros_like(array)
    result[2 * (255 - dog) > a] = 255
    return result


def _tile_resample(array: np.ndarray, resolution: int, a: float, b: float, extras: Extras) -> np.ndarray:
    if a < 1.1:
        return array
    height, width = array.shape[:2]
    return resize(array, max(1, int(width / a)), max(1, int(height / a)))


def _noise_disk(random: np.random.RandomState, height: int, width: int, f: int = 256) -> np.ndarray:
    """A1111's `make_noise_disk`: uniform noise on a coarse grid (one point per f pixels), cubic-upscaled, scaled
    to 0..1; HxWx1."""
    cv2 = opencv("shuffle")
    coarse = random.uniform(low=0, high=1, size=((height // f) + 2, (width // f) + 2, 1))
    noise = np.asarray(cv2.resize(coarse, (width + 2 * f, height + 2 * f), interpolation=cv2.INTER_CUBIC))
    noise = noise[f:f + height, f:f + width]
    noise = noise - noise.min()
    top = noise.max()
    return (noise / top if top > 0 else noise)[:, :, None]


def _shuffle(array: np.ndarray, resolution: int, a: float, b: float, extras: Extras) -> np.ndarray:
    """A1111's content shuffle: the picture (short side at the resolution) warped by a random smooth flow, drawn
    from the seed as A1111 draws it from NumPy's seeded global generator."""
    cv2 = opencv("shuffle")
    image = short_side(array, resolution)
    height, width = image.shape[:2]
    seed = secrets.randbits(32) if extras.seed is None else extras.seed & 0xFFFFFFFF
    random = np.random.RandomState(seed)
    x = _noise_disk(random, height, width) * float(width - 1)
    y = _noise_disk(random, height, width) * float(height - 1)
    flow = np.concatenate([x, y], axis=2).astype(np.float32)
    return np.asarray(cv2.remap(image, flow, None, cv2.INTER_LINEAR))


def _color(array: np.ndarray, resolution: int, a: float, b: float, extras: Extras) -> np.ndarray:
    """A1111's t2ia_color_grid: short side to the resolution, colours averaged on a 64-pixel grid (cubic down,
    nearest up)."""
    image = short_side(array, resolution, "area")
    height, width = image.shape[:2]
    grid = resize(image, max(1, width // 64), max(1, height // 64), "cubic")
    return resize(grid, width, height, "nearest")


def mask_array(mask: Image.Image, width: int, height: int) -> np.ndarray:
    """A mask picture as booleans at width x height: True (repaint) where its first channel (after A1111's `HWC3`)
    is above 127."""
    if mask.size != (width, height):
        mask = mask.resize((width, height), Image.Resampling.NEAREST)
    return rgb_array(mask)[..., 0] > 127


def _inpaint_only(array: np.ndarray, resolution: int, a: float, b: float, extras: Extras) -> np.ndarray:
    """The picture with its mask as alpha: transparent where masked (the ControlNet then sees -1 there), opaque
    elsewhere; no mask: nothing masked (as A1111)."""
    height, width = array.shape[:2]
    masked = np.zeros((height, width), bool) if extras.mask is None else mask_array(extras.mask, width, height)
    alpha = np.where(masked, 0, 255).astype(np.uint8)
    return np.concatenate([array[..., :3], alpha[..., None]], axis=2)


def _lineart_standard(array: np.ndarray, a: float, b: float, extras: Extras) -> np.ndarray:
    """A1111's weight-free lineart: how much darker each pixel is than its Gaussian surroundings (sigma 6), scaled
    by the median of the clear lines."""
    cv2 = opencv("lineart_standard")
    x = array.astype(np.float32)
    blurred = cv2.GaussianBlur(x, (0, 0), 6.0)
    intensity = np.min(blurred - x, axis=2).clip(0, 255)
    lines = intensity[intensity > 8]
    intensity /= max(16.0, float(np.median(lines)) if lines.size else 0.0)
    return (intensity * 127).clip(0, 255).astype(np.uint8)


def _blur_gaussian(array: np.ndarray, resolution: int, a: float, b: float, extras: Extras) -> np.ndarray:
    """The picture (short side at the resolution) blurred with a Gaussian of sigma = threshold a."""
    return np.asarray(opencv("blur_gaussian").GaussianBlur(short_side(array, resolution), (0, 0), float(a)))


def _session(extras: Extras) -> AnnotatorSession:
    return extras.annotators if extras.annotators is not None else AnnotatorSession(AnnotatorFolders())


def _depth(name: str, weights: Weights) -> Run:
    def run(array: np.ndarray, a: float, b: float, extras: Extras) -> np.ndarray:
        return depth_map(raw_depth(_session(extras), weights, name, array))
    return with_resolution(run)


def _normal(name: str, weights: Weights) -> Run:
    def run(array: np.ndarray, a: float, b: float, extras: Extras) -> np.ndarray:
        return normal_map(raw_depth(_session(extras), weights, name, array), background=a)
    return with_resolution(run)


def _segmentation(name: str, weights: Weights) -> Run:
    def run(array: np.ndarray, a: float, b: float, extras: Extras) -> np.ndarray:
        return segmentation_map(_session(extras), weights, name, array)
    return with_resolution(run)


def _openpose(name: str) -> Run:
    def run(array: np.ndarray, a: float, b: float, extras: Extras) -> np.ndarray:
        return openpose_map(_session(extras), name, array)
    return with_resolution(run)


MIDAS = Weights("midas", DEPTH, "Intel/dpt-hybrid-midas")
DEPTH_ANYTHING = Weights("depth_anything", DEPTH, "LiheYoung/depth-anything-large-hf")
UNIFORMER = Weights("uniformer", SEGMENTATION, "openmmlab/upernet-convnext-small")
ONEFORMER = Weights("oneformer", SEGMENTATION, "nvidia/segformer-b5-finetuned-ade-640-640")
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
    Preprocessor("shuffle", _shuffle, _RES, needs_opencv=True),
    Preprocessor("color", _color, _RES),
    Preprocessor("inpaint_only", _inpaint_only),
    Preprocessor("lineart_standard", with_resolution(_lineart_standard), _RES, needs_opencv=True),
    Preprocessor("blur_gaussian", _blur_gaussian, _RES, Slider("Sigma", 9.0, 0.01, 64.0, 0.01), needs_opencv=True),
    Preprocessor("depth", _depth("depth", MIDAS), _RES, weights=MIDAS),
    Preprocessor("depth_anything", _depth("depth_anything", DEPTH_ANYTHING), _RES, weights=DEPTH_ANYTHING),
    Preprocessor("normal_map", _normal("normal_map", MIDAS), _RES,
                 Slider("Normal Background Threshold", 0.4, 0.0, 1.0, 0.01), weights=MIDAS),
    Preprocessor("segmentation", _segmentation("segmentation", UNIFORMER), _RES, weights=UNIFORMER),
    Preprocessor("oneformer_ade20k", _segmentation("oneformer_ade20k", ONEFORMER), _RES, weights=ONEFORMER),
    Preprocessor("openpose", _openpose("openpose"), _RES, needs_opencv=True, weights=VITPOSE),
)}
"""The preprocessors by name, in `/controlnet/module_list` order."""

ALIASES = {"invert (from white bg & black line)": "invert", "t2ia_color_grid": "color",
           "lineart_standard (from white bg & black line)": "lineart_standard", "depth_midas": "depth",
           "normal_midas": "normal_map", "seg_ufade20k": "segmentation", "seg_ofade20k": "oneformer_ade20k"}
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
