"""Prompt matrix (A1111's built-in script, rewritten on the extension API): the prompt is split on `|`; the first
part is kept and every combination of the other ("optional") parts is generated, then shown in a labelled grid.

Controls, in A1111's positional `script_args` order: `put_at_start` ("Put variable parts at start of prompt"),
`different_seeds` ("Use different seed for each picture"), `prompt_type` ("positive" or "negative": which prompt
is split), `variations_delimiter` ("comma" joins the parts with ", ", "space" with " "), `margin_size` (grid
margins in pixels).

As in A1111: with k optional parts there are 2^k prompts; bit n of the combination's index chooses optional part
n, so the first prompt is the first part alone and the last one has every part. The seed (and variation seed) are
fixed once; every picture gets that seed, or seed + its index with "Use different seed for each picture"; the
variation seed is variation seed + index. The grid has 2^(k // 2) rows: the first ceil(k / 2) optional parts label
the columns, the others the rows, each label listing the parts as `+ part` (used) or `- part` (not used, grey and
struck through, as A1111 draws them). Results: the grid first (with the first picture's infotext), then every
picture with its own prompt. Here each picture is its own generation (batch size 1): batch size and batch count
do not change which pictures are made (A1111 groups the same prompts into batches of the batch size).
"""

from __future__ import annotations

import logging
import random
from typing import Any, Sequence

from PIL import Image, ImageDraw, ImageFont

from modules.extensions.api import (
    CombinedResult,
    ExtensionContext,
    GenerationRequest,
    GenerationResult,
    RunContext,
    UiBuilder,
    UserError,
)

TITLE = "Prompt matrix"
MAX_GRID_PIXELS = 250_000_000
DELIMITERS = {"comma": ", ", "space": " "}
PROMPT_TYPES = ("positive", "negative")

log = logging.getLogger("extensions.prompt_matrix")


def ui(builder: UiBuilder) -> dict[str, Any]:
    """A1111's controls in its positional order."""
    import gradio as gr

    with gr.Row():
        with gr.Column():
            put_at_start = gr.Checkbox(False, label="Put variable parts at start of prompt",
                                       elem_id=builder.elem_id("put_at_start"))
            different_seeds = gr.Checkbox(False, label="Use different seed for each picture",
                                          elem_id=builder.elem_id("different_seeds"))
        with gr.Column():
            prompt_type = gr.Radio(list(PROMPT_TYPES), value="positive", label="Select prompt",
                                   elem_id=builder.elem_id("prompt_type"))
            delimiter = gr.Radio(list(DELIMITERS), value="comma", label="Select joining char",
                                 elem_id=builder.elem_id("variations_delimiter"))
        with gr.Column():
            margin = gr.Slider(0, 500, value=0, step=2, label="Grid margins (px)",
                               elem_id=builder.elem_id("margin_size"))
    return {"put_at_start": put_at_start, "different_seeds": different_seeds, "prompt_type": prompt_type,
            "variations_delimiter": delimiter, "margin_size": margin}


def matrix_prompts(prompt: str, put_at_start: bool = False, delimiter: str = ", ") -> list[str]:
    """Every combination of the optional parts of `prompt` (A1111's order: bit n of the index picks part n + 1).
    The first part is kept as written; the optional parts lose surrounding spaces and commas."""
    parts = prompt.split("|")
    first, optional = parts[0], [part.strip().strip(",") for part in parts[1:]]
    prompts = []
    for index in range(1 << len(optional)):
        chosen = [part for bit, part in enumerate(optional) if index & (1 << bit)]
        prompts.append(delimiter.join(chosen + [first] if put_at_start else [first] + chosen))
    return prompts


def grid_shape(optional_parts: int) -> tuple[int, int]:
    """(columns, rows) of the grid for `optional_parts` optional parts: the columns take the first ceil(k / 2)."""
    rows = 1 << (optional_parts // 2)
    return (1 << optional_parts) // rows, rows


def _labels(parts: Sequence[str], count: int) -> list[list[tuple[str, bool]]]:
    """For each of `count` positions: every part with whether that position uses it (bit n = part n)."""
    return [[(part, bool(position & (1 << bit))) for bit, part in enumerate(parts)] for position in range(count)]


def _wrap(font: Any, text: str, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and font.getlength(candidate) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + [line] if line else lines


def matrix_grid(cells: Sequence[Image.Image | None], optional: Sequence[str], margin: int = 0) -> Image.Image:
    """The pictures (in combination order; None = not generated: black) in A1111's prompt-matrix grid: columns
    labelled with the first ceil(k / 2) optional parts, rows with the others, `+ part` / `- part`."""
    size = next(cell.size for cell in cells if cell is not None)
    width, height = size
    columns, rows = grid_shape(len(optional))
    boundary = len(optional) - len(optional) // 2
    font_size = max(12, (width + height) // 25)
    font = ImageFont.load_default(size=font_size)
    spacing = font_size // 2
    line_height = font_size + spacing

    def label_lines(parts: list[tuple[str, bool]], box_width: int) -> list[tuple[str, bool]]:
        return [(line, used) for part, used in parts
                for line in _wrap(font, f"{'+' if used else '-'} {part}", box_width)]

    col_labels = [label_lines(parts, width) for parts in _labels(optional[:boundary], columns)]
    row_width = width * 3 // 4
    row_labels = [label_lines(parts, row_width) for parts in _labels(optional[boundary:], rows)]
    top = max((len(lines) for lines in col_labels), default=0) * line_height
    top = top + 2 * spacing if top else 0
    left = row_width if any(row_labels) else 0
    grid = Image.new("RGB", (left + columns * width + (columns - 1) * margin,
                             top + rows * height + (rows - 1) * margin), "white")
    draw = ImageDraw.Draw(grid)

    def write(lines: list[tuple[str, bool]], box: tuple[int, int, int, int]) -> None:
        x0, y0, x1, y1 = box
        y = y0 + (y1 - y0 - len(lines) * line_height) // 2 + spacing // 2
        for line, used in lines:
            x = x0 + (x1 - x0 - int(font.getlength(line))) // 2
            draw.text((x, y), line, fill="black" if used else (153, 153, 153), font=font)
            if not used:  # A1111 strikes unused parts through (here not the "- " in front)
                middle = y + font_size * 3 // 5
                start = x + int(font.getlength("- ")) if line.startswith("- ") else x
                draw.line((start, middle, x + int(font.getlength(line)), middle), fill=(153, 153, 153),
                          width=max(1, font_size // 12))
            y += line_height

    for index, cell in enumerate(cells):
        col, row = index % columns, index // columns
        x, y = left + col * (width + margin), top + row * (height + margin)
        grid.paste(cell.convert("RGB") if cell is not None else Image.new("RGB", size), (x, y))
    for col, lines in enumerate(col_labels if top else []):
        x = left + col * (width + margin)
        write(lines, (x, 0, x + width, top))
    for row, lines in enumerate(row_labels if left else []):
        y = top + row * (height + margin)
        write(lines, (0, y, left, y + height))
    return grid


def _choice(ctx: RunContext, name: str, default: str, allowed: Sequence[str], what: str) -> str:
    value = str(ctx.args.get(name) or default).strip().lower()
    if value not in allowed:
        raise UserError(f"{TITLE}: unknown {what} {ctx.args.get(name)!r}; choose one of: {', '.join(allowed)}.")
    return value


def _random_seed() -> int:
    return random.randrange(4294967294)


def run(ctx: RunContext, request: GenerationRequest) -> GenerationResult:
    """One generation per combination, then the grid (see the module doc)."""
    prompt_type = _choice(ctx, "prompt_type", "positive", PROMPT_TYPES, "prompt type")
    delimiter = DELIMITERS[_choice(ctx, "variations_delimiter", "comma", tuple(DELIMITERS), "joining char")]
    put_at_start, different_seeds = bool(ctx.args.get("put_at_start")), bool(ctx.args.get("different_seeds"))
    try:
        margin = int(ctx.args.get("margin_size") or 0)
    except (TypeError, ValueError):
        raise UserError(f"{TITLE}: the grid margin must be a number of pixels, got "
                        f"{ctx.args.get('margin_size')!r}.") from None
    if margin < 0:
        raise UserError(f"{TITLE}: the grid margin must be 0 or more pixels, got {margin}.")
    source = request.prompt if prompt_type == "positive" else request.negative_prompt
    optional = [part.strip().strip(",") for part in source.split("|")[1:]]
    count = 1 << len(optional)
    if count * request.width * request.height > MAX_GRID_PIXELS:
        raise UserError(f"{TITLE}: {len(optional)} optional parts make {count} pictures of {request.width}x"
                        f"{request.height}, too many for one grid; use fewer '|' parts or a smaller size.")
    prompts = matrix_prompts(source, put_at_start, delimiter)
    seed = _random_seed() if request.seed == -1 else request.seed
    subseed = _random_seed() if request.subseed == -1 else request.subseed
    log.info("Prompt matrix will create %d images", count)
    cells: list[GenerationResult | None] = [None] * count
    interrupted = False
    for index, text in enumerate(prompts):
        if ctx.interrupted():
            interrupted = True
            break
        field = "prompt" if prompt_type == "positive" else "negative_prompt"
        job = request.with_changes(**{field: text}, seed=seed + (index if different_seeds else 0),
                                   subseed=subseed + index, batch_size=1, n_iter=1)
        result = ctx.generate(job, part=(index, count))
        cells[index] = result if result.images else None
        if result.interrupted:
            interrupted = True
            break
    return _assemble(ctx, request, cells, optional, margin, interrupted)


def _assemble(ctx: RunContext, request: GenerationRequest, cells: list[GenerationResult | None],
              optional: list[str], margin: int, interrupted: bool) -> GenerationResult:
    done = [result for result in cells if result is not None]
    if not done:
        return GenerationResult((), (), (), (), (), (), request, interrupted=interrupted)
    grid = matrix_grid([result.images[0] if result is not None else None for result in cells], optional, margin)
    first = done[0]
    ctx.save_grid(grid, first.infotexts[0])
    combined = CombinedResult()
    for result in done:
        combined.add_result(result)
    combined.put_first([grid], like=first)
    return combined.result(request, interrupted=interrupted)


def register(ext: ExtensionContext) -> None:
    ext.add_script(TITLE, ui=ui, run=run)
