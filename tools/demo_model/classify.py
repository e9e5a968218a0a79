"""Pixel classifier for demo-model images: background colour, foreground colour and shape of one image.

It is the ground truth of the evaluation, so it works on any RGB image of the demo's kind (generated or drawn):

* background: the median colour of the border pixels, snapped to the nearest palette colour;
* foreground: the largest 4-connected region of pixels far from the background colour; its median colour,
  snapped to the palette;
* shape: the region's bounding box is cut into a 4 x 4 grid and the fraction of each cell the region fills is
  compared with the same grid of each ideal shape (`dataset.shape_mask`); the nearest (mean absolute difference)
  wins. Corners tell a square (filled) from a circle (mostly empty), the top row tells a triangle; a square with
  slightly rounded or pinched sides, as a small model draws it, stays a square. (How much of the box the region
  fills, `fill_ratio`, is reported too: circle ~0.785, square 1.0, triangle 0.5.)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tools.demo_model.dataset import COLOUR_NAMES, COLOURS, SHAPES, shape_mask

FOREGROUND_DISTANCE = 60.0  # RGB distance from the background colour that marks a foreground pixel
MIN_REGION = 16  # pixels: smaller regions are noise, not a shape
SHAPE_GRID = 4  # cells per side of the bounding-box occupancy grid
_TEMPLATE_SIZE = 256  # pixels per side when the ideal shapes' grids are computed

_PALETTE = np.array([COLOURS[name] for name in COLOUR_NAMES], dtype=np.float64)


@dataclass(frozen=True)
class Classification:
    """What the classifier sees; foreground/shape are None when no shape-sized region differs from the background."""

    background: str
    foreground: str | None
    shape: str | None
    fill_ratio: float
    region_pixels: int


def nearest_colour(rgb: np.ndarray) -> str:
    """Name of the palette colour closest (Euclidean RGB) to one colour."""
    distances = np.linalg.norm(_PALETTE - np.asarray(rgb, dtype=np.float64), axis=1)
    return COLOUR_NAMES[int(np.argmin(distances))]


def _border(image: np.ndarray) -> np.ndarray:
    return np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])


def largest_region(mask: np.ndarray) -> np.ndarray:
    """Boolean mask of the largest 4-connected True region of `mask` (all False when there is none)."""
    labels = np.zeros(mask.shape, dtype=np.int32)
    best_label, best_size, label = 0, 0, 0
    height, width = mask.shape
    for start_y, start_x in zip(*np.nonzero(mask)):
        if labels[start_y, start_x]:
            continue
        label += 1
        labels[start_y, start_x] = label
        queue, size = deque([(start_y, start_x)]), 0
        while queue:
            y, x = queue.popleft()
            size += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = label
                    queue.append((ny, nx))
        if size > best_size:
            best_label, best_size = label, size
    return labels == best_label if best_label else np.zeros_like(mask)


def occupancy_grid(mask: np.ndarray, cells: int = SHAPE_GRID) -> np.ndarray:
    """(cells, cells) fraction of each cell of the mask's bounding box that the mask fills (area-averaged)."""
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32)
    return np.asarray(Image.fromarray(crop, mode="F").resize((cells, cells), Image.Resampling.BOX))


def _templates() -> dict[str, np.ndarray]:
    return {shape: occupancy_grid(shape_mask(shape, _TEMPLATE_SIZE, 0, 0, _TEMPLATE_SIZE)) for shape in SHAPES}


_TEMPLATES = _templates()


def shape_of(mask: np.ndarray) -> str:
    """The ideal shape whose occupancy grid is nearest to the region's (mean absolute difference)."""
    grid = occupancy_grid(mask)
    return min(SHAPES, key=lambda shape: float(np.abs(grid - _TEMPLATES[shape]).mean()))


def foreground_region(image: np.ndarray) -> tuple[str, np.ndarray]:
    """(background colour name, boolean mask of the largest region far from it) of one RGB image."""
    pixels = np.asarray(image, dtype=np.float64)[..., :3]
    background = nearest_colour(np.median(_border(pixels), axis=0))
    distance = np.linalg.norm(pixels - _PALETTE[COLOUR_NAMES.index(background)], axis=-1)
    return background, largest_region(distance > FOREGROUND_DISTANCE)


def classify(image: np.ndarray) -> Classification:
    """Classify one (H, W, 3) RGB image (uint8 or float 0-255)."""
    pixels = np.asarray(image, dtype=np.float64)[..., :3]
    background, region = foreground_region(pixels)
    count = int(region.sum())
    if count < MIN_REGION:
        return Classification(background, None, None, 0.0, count)
    foreground = nearest_colour(np.median(pixels[region], axis=0))
    ys, xs = np.nonzero(region)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    ratio = count / box
    return Classification(background, foreground, shape_of(region), ratio, count)


def region_iou(first: np.ndarray, second: np.ndarray) -> float:
    """Intersection over union of the foreground regions of two images (1.0 = the shape stayed in place)."""
    a, b = foreground_region(first)[1], foreground_region(second)[1]
    union = int((a | b).sum())
    return float((a & b).sum() / union) if union else 1.0
