"""SD upscale's tiles, as A1111's `images.split_grid` / `combine_grid` make them, and the seed of each tile.

Splitting: with tiles of `tile_w` x `tile_h` and `overlap` pixels, a picture of width w has
`cols = ceil((w - overlap) / (tile_w - overlap))` columns, spread evenly: column c starts at `int(c * dx)` with
`dx = (w - tile_w) / (cols - 1)` (0 for one column), moved to `w - tile_w` where it would reach the right edge;
rows alike. Tiles therefore overlap by at least `overlap` pixels, often more.

Recombining: each row is assembled left to right; a tile is pasted over the row so far with its first `overlap`
columns blended linearly (mask `int(i * 255 / overlap)` for column i, Pillow's rounded alpha blend), the rest pasted
as is. Rows are then stacked top to bottom with their first `overlap` rows blended the same way. Where tiles overlap
by more than `overlap`, the later tile simply covers the earlier one (A1111 does the same).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass
class TileRow:
    """One row of tiles: its top `y`, and (left x, tile picture) per column."""

    y: int
    tiles: list[tuple[int, Image.Image]] = field(default_factory=list)


@dataclass
class TileGrid:
    """A picture cut into overlapping tiles (see the module doc)."""

    tile_w: int
    tile_h: int
    image_w: int
    image_h: int
    overlap: int
    rows: list[TileRow] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(row.tiles) for row in self.rows)

    @property
    def columns(self) -> int:
        return len(self.rows[0].tiles) if self.rows else 0

    def pictures(self) -> list[Image.Image]:
        """The tiles in processing order: rows top to bottom, each left to right."""
        return [tile for row in self.rows for _, tile in row.tiles]

    def with_pictures(self, pictures: list[Image.Image]) -> "TileGrid":
        """The same grid with the tiles replaced, in `pictures()` order (missing ones stay as they were)."""
        replaced = iter(pictures)
        rows = [TileRow(row.y, [(x, next(replaced, tile)) for x, tile in row.tiles]) for row in self.rows]
        return TileGrid(self.tile_w, self.tile_h, self.image_w, self.image_h, self.overlap, rows)


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1) if count > 1 else 0
    starts = []
    for index in range(count):
        start = int(index * step)
        if start + tile >= length:
            start = length - tile
        starts.append(start)
    return starts


def split(image: Image.Image, tile_w: int, tile_h: int, overlap: int) -> TileGrid:
    """`image` cut into tiles of `tile_w` x `tile_h` (the picture must be at least that large; 0 <= overlap <
    min(tile_w, tile_h))."""
    if not 0 <= overlap < min(tile_w, tile_h):
        raise ValueError(f"overlap {overlap} must be at least 0 and less than the tile size {tile_w}x{tile_h}")
    if image.width < tile_w or image.height < tile_h:
        raise ValueError(f"a {image.width}x{image.height} picture is smaller than a {tile_w}x{tile_h} tile")
    grid = TileGrid(tile_w, tile_h, image.width, image.height, overlap)
    columns = _starts(image.width, tile_w, overlap)
    for y in _starts(image.height, tile_h, overlap):
        grid.rows.append(TileRow(y, [(x, image.crop((x, y, x + tile_w, y + tile_h))) for x in columns]))
    return grid


def _ramp(overlap: int, size: tuple[int, int], horizontal: bool) -> Image.Image:
    """The blend mask of an overlap: 0 at the first column (row), rising by 255 / overlap per pixel."""
    values = (np.arange(overlap, dtype=np.float32) * 255 / overlap).astype(np.uint8)
    width, height = size
    array = np.tile(values, (height, 1)) if horizontal else np.tile(values[:, None], (1, width))
    return Image.fromarray(array, "L")


def combine(grid: TileGrid) -> Image.Image:
    """The tiles put back together into one `image_w` x `image_h` picture (see the module doc)."""
    overlap = grid.overlap
    combined = Image.new("RGB", (grid.image_w, grid.image_h))
    column_mask = _ramp(overlap, (overlap, grid.tile_h), True) if overlap else None
    row_mask = _ramp(overlap, (grid.image_w, overlap), False) if overlap else None
    for row in grid.rows:
        line = Image.new("RGB", (grid.image_w, grid.tile_h))
        for x, tile in row.tiles:
            tile = tile.convert("RGB")
            if x == 0 or column_mask is None:
                line.paste(tile, (x, 0))
                continue
            line.paste(tile.crop((0, 0, overlap, grid.tile_h)), (x, 0), mask=column_mask)
            line.paste(tile.crop((overlap, 0, grid.tile_w, grid.tile_h)), (x + overlap, 0))
        if row.y == 0 or row_mask is None:
            combined.paste(line, (0, row.y))
            continue
        combined.paste(line.crop((0, 0, grid.image_w, overlap)), (0, row.y), mask=row_mask)
        combined.paste(line.crop((0, overlap, grid.image_w, grid.tile_h)), (0, row.y + overlap))
    return combined


def tile_seeds(seed: int, subseed: int, subseed_strength: float, count: int, batch_size: int
               ) -> list[tuple[int, int]]:
    """(seed, variation seed) of each of `count` tiles of one upscale whose first batch starts at `seed`.

    A1111 runs the tiles in batches of `batch_size`; image k of a batch gets the batch's seed + k (the same seed
    for all when a variation seed strength is set) and variation seed `subseed` + k, and each batch starts one seed
    after the previous one. So tile j = i * batch_size + k gets seed + i + k (seed + i), subseed + k."""
    size = max(1, batch_size)
    seeds = []
    for index in range(count):
        batch, k = divmod(index, size)
        seeds.append((seed + batch + (k if subseed_strength == 0 else 0), subseed + k))
    return seeds
