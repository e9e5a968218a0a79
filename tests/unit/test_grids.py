"""A1111's picture grid (`modules.grids`): rows as `n_rows` says, cells in reading order, decoded pixels."""

from __future__ import annotations

import pytest
from PIL import Image

from modules.grids import grid_rows, image_grid


@pytest.mark.parametrize("count, batch_size, n_rows, rows", [
    (4, 4, -1, 2), (2, 2, -1, 1), (3, 1, -1, 2), (6, 3, -1, 2), (9, 1, -1, 3),  # round(sqrt(n))
    (6, 3, 0, 3), (6, 2, 0, 2),  # 0: as many rows as the batch size
    (6, 1, 3, 3), (2, 1, 5, 2),  # a number: that many, never more than the pictures
    (1, 1, -1, 1),
])
def test_rows(count: int, batch_size: int, n_rows: int, rows: int) -> None:
    assert grid_rows(count, batch_size, n_rows) == rows


def test_cells_in_reading_order_on_black() -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    grid = image_grid([Image.new("RGB", (4, 3), colour) for colour in colours])
    assert grid.size == (8, 6)  # 2 rows of 2 columns
    assert [grid.getpixel(xy) for xy in ((0, 0), (4, 0), (0, 3), (4, 3))] == [*colours, (0, 0, 0)]
    rgba = image_grid([Image.new("RGBA", (2, 2), (9, 9, 9, 0)), Image.new("RGB", (3, 3), (7, 7, 7))], n_rows=1)
    assert rgba.mode == "RGB" and rgba.size == (4, 2) and rgba.getpixel((3, 1)) == (7, 7, 7)  # cut to its cell
    with pytest.raises(ValueError):
        image_grid([])
