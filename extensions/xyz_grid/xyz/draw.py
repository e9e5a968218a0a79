"""Grid images with axis labels, drawn with PIL.

Layout of one grid: a band of column labels (X values) above the cells, a column of row labels (Y values) left of
them, cells of equal size separated by `margin` pixels, white background, black text wrapped to fit. A band or
column is left out when all its labels are empty (an axis of type Nothing), so a grid without labels is exactly
`cols * w + (cols - 1) * margin` wide. Several grids (one per Z value) are put side by side under their titles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


@dataclass(frozen=True)
class Lettering:
    """Font and spacing for labels of cells of one size."""

    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    line_height: int
    pad: int

    @classmethod
    def for_cell(cls, width: int, height: int) -> "Lettering":
        size = max(12, (width + height) // 25)
        font = ImageFont.load_default(size=size)
        return cls(font, int(size * 1.25), max(4, size // 2))

    def width(self, text: str) -> int:
        left, _, right, _ = self.font.getbbox(text)
        return int(right - left)

    def wrap(self, text: str, max_width: int) -> list[str]:
        """Greedy word wrap; a single word longer than `max_width` stays on its own line."""
        lines: list[str] = []
        for paragraph in text.split("\n"):
            line = ""
            for word in paragraph.split(" "):
                candidate = f"{line} {word}".strip()
                if line and self.width(candidate) > max_width:
                    lines.append(line)
                    line = word
                else:
                    line = candidate
            lines.append(line)
        return [line for line in lines if line] if text else []


def _draw_lines(draw: ImageDraw.ImageDraw, lettering: Lettering, lines: list[str], box: tuple[int, int, int, int]
                ) -> None:
    """Lines centred horizontally and vertically in `box` (left, top, right, bottom)."""
    left, top, right, bottom = box
    y = top + (bottom - top - len(lines) * lettering.line_height) // 2
    for line in lines:
        x = left + (right - left - lettering.width(line)) // 2
        draw.text((x, y), line, fill=TEXT, font=lettering.font)
        y += lettering.line_height


def annotated_grid(cells: Sequence[Sequence[Image.Image]], col_labels: Sequence[str], row_labels: Sequence[str],
                   margin: int = 0, draw_legend: bool = True) -> Image.Image:
    """`cells[row][col]` (all of one size) in a grid, with column labels on top and row labels on the left."""
    width, height = cells[0][0].size
    rows, cols = len(cells), len(cells[0])
    lettering = Lettering.for_cell(width, height)
    col_lines = [lettering.wrap(text, width - lettering.pad) for text in col_labels] if draw_legend else []
    row_width = max(width, 10 * lettering.line_height)
    row_lines = [lettering.wrap(text, row_width) for text in row_labels] if draw_legend else []
    top = max((len(lines) for lines in col_lines), default=0) * lettering.line_height
    top = top + 2 * lettering.pad if top else 0
    left = max((lettering.width(line) for lines in row_lines for line in lines), default=0)
    left = left + 2 * lettering.pad if left else 0
    grid = Image.new("RGB", (left + cols * width + (cols - 1) * margin, top + rows * height + (rows - 1) * margin),
                     BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for row in range(rows):
        y = top + row * (height + margin)
        for col in range(cols):
            grid.paste(cells[row][col].convert("RGB"), (left + col * (width + margin), y))
        if left and row_lines[row]:
            _draw_lines(draw, lettering, row_lines[row], (0, y, left, y + height))
    for col in range(cols) if top else ():
        x = left + col * (width + margin)
        _draw_lines(draw, lettering, col_lines[col], (x, 0, x + width, top))
    return grid


def titled_row(grids: Sequence[Image.Image], titles: Sequence[str], margin: int = 0, draw_legend: bool = True,
               cell_size: tuple[int, int] = (512, 512)) -> Image.Image:
    """Grids side by side (top-aligned) under their titles (the Z axis)."""
    lettering = Lettering.for_cell(*cell_size)
    width = max(grid.width for grid in grids)
    lines = [lettering.wrap(title, width) for title in titles] if draw_legend else []
    top = max((len(item) for item in lines), default=0) * lettering.line_height
    top = top + 2 * lettering.pad if top else 0
    height = max(grid.height for grid in grids)
    canvas = Image.new("RGB", (len(grids) * width + (len(grids) - 1) * margin, top + height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for index, grid in enumerate(grids):
        x = index * (width + margin)
        canvas.paste(grid, (x, top))
        if top:
            _draw_lines(draw, lettering, lines[index], (x, 0, x + width, top))
    return canvas
