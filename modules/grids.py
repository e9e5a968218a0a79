"""A1111's picture grid: the pictures of a job side by side, in rows (`image_grid`), as saved to the grids folder
and shown first in the gallery (settings `grid_save`, `return_grid`, `n_rows`, `grid_only_if_multiple`)."""

from __future__ import annotations

import math
from typing import Sequence

from PIL import Image


def grid_rows(count: int, batch_size: int = 1, n_rows: int = -1) -> int:
    """How many rows a grid of `count` pictures has: `n_rows` when positive, the batch size when 0, otherwise
    round(sqrt(count)) (A1111's "-1 for autodetect"); never more rows than pictures."""
    if n_rows > 0:
        rows = n_rows
    elif n_rows == 0:
        rows = max(1, batch_size)
    else:
        rows = round(math.sqrt(count))
    return max(1, min(rows, count))


def image_grid(pictures: Sequence[Image.Image], batch_size: int = 1, n_rows: int = -1) -> Image.Image:
    """The pictures left to right, top to bottom, in `grid_rows` rows on black, each cell the first picture's size
    (a larger picture is cut at its cell, a smaller one leaves black around it)."""
    if not pictures:
        raise ValueError("a grid needs at least one picture")
    rows = grid_rows(len(pictures), batch_size, n_rows)
    columns = math.ceil(len(pictures) / rows)
    width, height = pictures[0].size
    grid = Image.new("RGB", (columns * width, rows * height))
    for index, picture in enumerate(pictures):
        cell = picture.convert("RGB").crop((0, 0, width, height)) if picture.size != (width, height) \
            else picture.convert("RGB")
        grid.paste(cell, (index % columns * width, index // columns * height))
    return grid
