"""Tiled inference for image-to-image models: the picture in tiles, each run with context, stitched back exactly.

A tile is a `tile` x `tile` block of the input (the last row and column may be smaller). The model sees the tile
plus `overlap` pixels of the picture around it (less at the picture's edges) and only the tile's own part of its
output is kept, so nothing is blended: where `overlap` covers the model's receptive field, the tiled result is the
untiled one. A1111 instead blends overlapping tiles (`ESRGAN_tile_overlap` is the blend width there); the
difference is in docs/compat.md. `tile` <= 0, or a picture no larger than one tile, runs in one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from modules.errors import Interrupted

ImageModel = Callable[[torch.Tensor], torch.Tensor]
"""(1, C, h, w) in [0, 1] -> (1, C', h * scale, w * scale) in [0, 1], the model's fixed `scale`."""


@dataclass(frozen=True)
class Tile:
    """One tile: its own rows/columns (`top`..`bottom`, `left`..`right`) and the input read around it."""

    top: int
    bottom: int
    left: int
    right: int
    in_top: int
    in_bottom: int
    in_left: int
    in_right: int


def _spans(length: int, tile: int) -> list[tuple[int, int]]:
    if tile <= 0 or length <= tile:
        return [(0, length)]
    return [(start, min(start + tile, length)) for start in range(0, length, tile)]


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """The tiles covering a `height` x `width` picture, row by row."""
    overlap = max(0, overlap)
    return [Tile(top, bottom, left, right, max(0, top - overlap), min(height, bottom + overlap),
                 max(0, left - overlap), min(width, right + overlap))
            for top, bottom in _spans(height, tile) for left, right in _spans(width, tile)]


def run_tiled(model: ImageModel, image: torch.Tensor, tile: int, overlap: int,
              should_stop: Callable[[], bool] = lambda: False,
              on_progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """`model(image)` computed tile by tile (see the module doc). `should_stop` is checked before each tile and
    raises `Interrupted`; `on_progress(done, total)` follows each tile."""
    _, _, height, width = image.shape
    tiles = plan_tiles(height, width, tile, overlap)
    output: torch.Tensor | None = None
    scale = 1
    for done, part in enumerate(tiles, start=1):
        if should_stop():
            raise Interrupted("Upscaling was interrupted.")
        result = model(image[:, :, part.in_top:part.in_bottom, part.in_left:part.in_right])
        if output is None:
            scale = result.shape[2] // (part.in_bottom - part.in_top)
            output = result.new_zeros((result.shape[0], result.shape[1], height * scale, width * scale))
        top, left = (part.top - part.in_top) * scale, (part.left - part.in_left) * scale
        rows, cols = (part.bottom - part.top) * scale, (part.right - part.left) * scale
        output[:, :, part.top * scale:part.bottom * scale, part.left * scale:part.right * scale] = \
            result[:, :, top:top + rows, left:left + cols]
        if on_progress is not None:
            on_progress(done, len(tiles))
    assert output is not None
    return output
