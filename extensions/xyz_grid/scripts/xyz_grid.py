"""X/Y/Z plot (A1111's built-in script, rewritten on the extension API): one generation per combination of up to
three axis values, assembled into a labelled grid.

Controls: A1111's 18 positional `script_args` in A1111's order (x_type, x_values, x_values_dropdown, ..., margin_size,
csv_mode; see xyz/controls.py, which also reads this program's earlier 11-value layout). Axis types are labels
("Steps") or A1111's indexes (see xyz/axes.py for types and value syntax).

Semantics follow A1111: a random seed (-1) is fixed once for the whole plot unless "Keep -1 for seeds" is on (and
-1 on a Seed axis becomes a random seed); "Vary seeds for X/Y/Z" add the cell's position along those axes to its
seed (X: +ix, Y: +iy * len(X) when X varies too, else +iy, Z likewise), a seed of -1 stays random; values are
validated before the first generation; the slowest axis (checkpoint) is the outer loop; each cell uses the first
image of its generation; an interrupt stops the plot and the cells not generated stay black. Results: the grid
first, then the per-Z grids ("Include Sub Grids", when there are several), then every image ("Include Sub Images",
on by default here, off in A1111), with the comments of every cell's generation (e.g. LoRAs with errors).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

from PIL import Image

from modules.extensions.api import (
    CombinedResult,
    ExtensionContext,
    GenerationRequest,
    GenerationResult,
    RunContext,
    with_infotext_params,
)

from ..xyz.axes import SEED_AXES, Axis, AxisError, find_axis
from ..xyz.controls import AXIS_NAMES, axis_text, named_args, ui
from ..xyz.draw import annotated_grid, titled_row

TITLE = "X/Y/Z plot"
MAX_GRID_PIXELS = 250_000_000

log = logging.getLogger("extensions.xyz_grid")


@dataclass(frozen=True)
class Plan:
    """The three axes with their validated values and the text the user typed (for the infotext)."""

    axes: tuple[Axis, Axis, Axis]
    values: tuple[list[Any], list[Any], list[Any]]
    texts: tuple[str, str, str]

    def counts(self) -> tuple[int, int, int]:
        return len(self.values[0]), len(self.values[1]), len(self.values[2])

    def index(self, ix: int, iy: int, iz: int) -> int:
        nx, ny, _ = self.counts()
        return ix + iy * nx + iz * nx * ny

    def cell_order(self) -> list[tuple[int, int, int]]:
        """(ix, iy, iz) in generation order: the costliest axis outermost, then Z, Y, X (A1111's default)."""
        nest = sorted((2, 1, 0), key=lambda axis: -self.axes[axis].cost)  # stable: ties keep z, y, x
        ranges = [range(n) for n in self.counts()]
        order: list[tuple[int, int, int]] = []
        for a in ranges[nest[0]]:
            for b in ranges[nest[1]]:
                for c in ranges[nest[2]]:
                    position = {nest[0]: a, nest[1]: b, nest[2]: c}
                    order.append((position[0], position[1], position[2]))
        return order

    def apply(self, request: GenerationRequest, cell: tuple[int, int, int]) -> GenerationRequest:
        for axis, values, index in zip(self.axes, self.values, cell):
            request = axis.apply(request, values[index], values)
        return request

    def labels(self, axis: int) -> list[str]:
        return [self.axes[axis].format(value) for value in self.values[axis]]


def seed_offset(cell: tuple[int, int, int], counts: tuple[int, int, int], vary: tuple[bool, bool, bool]) -> int:
    """What "Vary seeds for X/Y/Z" add to a cell's seed (A1111's formula, see the module doc)."""
    (ix, iy, iz), (nx, ny, _) = cell, counts
    xdim, ydim = (nx if vary[0] else 1), (ny if vary[1] else 1)
    return (ix if vary[0] else 0) + (iy * xdim if vary[1] else 0) + (iz * xdim * ydim if vary[2] else 0)


def cell_request(plan: Plan, request: GenerationRequest, cell: tuple[int, int, int],
                 vary: tuple[bool, bool, bool]) -> GenerationRequest:
    """The request of one cell: the axis values applied, then the seed varied (a -1 seed stays random)."""
    changed = plan.apply(request, cell)
    offset = seed_offset(cell, plan.counts(), vary)
    return changed.with_changes(seed=changed.seed + offset) if offset and changed.seed != -1 else changed


def _random_seed() -> int:
    return random.randrange(4294967294)


def make_plan(ctx: RunContext, request: GenerationRequest) -> Plan:
    """Parse and validate the three axes (before anything is generated)."""
    args = ctx.args
    fixed_seeds = not bool(args.get("no_fixed_seeds", False))
    axes, values, texts = [], [], []
    for name in AXIS_NAMES:
        axis = find_axis(args.get(f"{name}_type", "Seed" if name == "x" else "Nothing"), request.mode,
                         ctx.plot_axes())
        text = axis_text(args, name)
        parsed = axis.parse(text)
        if axis.confirm is not None:
            parsed = axis.confirm(ctx, request, parsed)
        if fixed_seeds and axis.label in SEED_AXES:
            parsed = [_random_seed() if value == -1 else value for value in parsed]
        axes.append(axis)
        values.append(parsed)
        texts.append(text)
    plan = Plan((axes[0], axes[1], axes[2]), (values[0], values[1], values[2]), (texts[0], texts[1], texts[2]))
    nx, ny, nz = plan.counts()
    if nx * ny * nz * request.width * request.height > MAX_GRID_PIXELS:
        raise AxisError(f"The X/Y/Z plot would be too large ({nx}x{ny}x{nz} images of {request.width}x"
                        f"{request.height}); use fewer values or a smaller size.")
    return plan


def run(ctx: RunContext, request: GenerationRequest) -> GenerationResult:
    """Generate every cell, then assemble the grid(s)."""
    plan = make_plan(ctx, request)
    if not bool(ctx.args.get("no_fixed_seeds", False)):
        request = request.with_changes(seed=_random_seed() if request.seed == -1 else request.seed,
                                       subseed=_random_seed() if request.subseed == -1 else request.subseed)
    log.info("%s: %d x %d x %d cells", TITLE, *plan.counts())
    vary = (bool(ctx.args.get("vary_seeds_x")), bool(ctx.args.get("vary_seeds_y")), bool(ctx.args.get("vary_seeds_z")))
    results: dict[int, GenerationResult] = {}
    interrupted = False
    for cell in plan.cell_order():
        if ctx.interrupted():
            interrupted = True
            break
        result = ctx.generate(cell_request(plan, request, cell, vary))
        results[plan.index(*cell)] = result
        if result.interrupted:
            interrupted = True
            break
    return assemble(ctx, plan, request, results, interrupted)


def _grid_infotext(plan: Plan, first: GenerationResult) -> str:
    params: dict[str, Any] = {"Script": TITLE}
    for name, axis, text in zip(AXIS_NAMES, plan.axes, plan.texts):
        if axis.label != "Nothing":
            params[f"{name.upper()} Type"] = axis.label
            params[f"{name.upper()} Values"] = text
    return with_infotext_params(first.infotexts[0], params)


def _grids(ctx: RunContext, plan: Plan, results: dict[int, GenerationResult], size: tuple[int, int]
           ) -> list[Image.Image]:
    """One annotated grid per Z value."""
    nx, ny, nz = plan.counts()
    blank = Image.new("RGB", size)
    legend = bool(ctx.args.get("draw_legend", True))
    margin = int(ctx.args.get("margin_size", 0) or 0)

    def cell(index: int) -> Image.Image:
        result = results.get(index)
        return result.images[0] if result is not None and result.images else blank

    return [annotated_grid([[cell(plan.index(ix, iy, iz)) for ix in range(nx)] for iy in range(ny)],
                           plan.labels(0), plan.labels(1), margin, legend) for iz in range(nz)]


def assemble(ctx: RunContext, plan: Plan, request: GenerationRequest, results: dict[int, GenerationResult],
             interrupted: bool) -> GenerationResult:
    """The result: main grid, optional sub-grids, optional individual images (see the module doc)."""
    done = [results[index] for index in sorted(results) if results[index].images]
    if not done:
        return GenerationResult((), (), (), (), (), (), request, interrupted=interrupted)
    first = done[0]
    grids = _grids(ctx, plan, results, first.images[0].size)
    margin = int(ctx.args.get("margin_size", 0) or 0)
    main = grids[0] if len(grids) == 1 else titled_row(grids, plan.labels(2), margin,
                                                       bool(ctx.args.get("draw_legend", True)), first.images[0].size)
    info = _grid_infotext(plan, first)
    ctx.save_grid(main, info)
    combined = CombinedResult()
    if ctx.args.get("include_lone_images", True):
        for result in done:
            combined.add_result(result)
    else:
        combined.add_comments(comment for result in done for comment in result.comments)
    sub_grids = grids if len(grids) > 1 and ctx.args.get("include_sub_grids", False) else []
    combined.put_first([main, *sub_grids], like=first, infotext=info)
    return combined.result(request, interrupted=interrupted)


def register(ext: ExtensionContext) -> None:
    ext.add_script(TITLE, ui=ui, run=run, positional=named_args)
