"""What both outpainting scripts share: the sides, the padded canvas and its mask, and the checks of their controls.

Sizes: a generation's sides are multiples of 8, so `pixels` is rounded up to a multiple of 8, and an axis of the
picture that is not a multiple of 8 gets the missing pixels on its first chosen side (left before right, up before
down), or at the right / bottom when neither side of that axis is chosen; those pixels are new area too.
"""

from __future__ import annotations

from typing import Any, Iterable

from PIL import Image, ImageDraw

from modules.extensions.api import GenerationRequest, UserError

SIDES = ("left", "right", "up", "down")
PIXELS_RANGE = (8, 256)
BLUR_RANGE = (0, 64)


def round8(value: int) -> int:
    """`value` rounded up to a multiple of 8."""
    return -(-value // 8) * 8


def padding(size: tuple[int, int], pixels: int, directions: Iterable[str]) -> dict[str, int]:
    """Pixels added on each side of a picture of `size` (width, height): `pixels` (rounded up to a multiple of 8)
    on each chosen side, plus what makes each axis a multiple of 8 (see the module doc)."""
    chosen = set(directions)
    step = round8(pixels)
    pad = {side: step if side in chosen else 0 for side in SIDES}
    for length, (first, second) in ((size[0], ("left", "right")), (size[1], ("up", "down"))):
        pad[first if first in chosen else second] += -length % 8
    return pad


def padded(image: Image.Image, pad: dict[str, int]) -> tuple[Image.Image, Image.Image]:
    """(the picture on a black canvas larger by `pad` on each side, the "L" mask of the new area: 255 there, 0 over
    the picture)."""
    width = image.width + pad["left"] + pad["right"]
    height = image.height + pad["up"] + pad["down"]
    canvas = Image.new("RGB", (width, height))
    canvas.paste(image.convert("RGB"), (pad["left"], pad["up"]))
    mask = Image.new("L", (width, height), 255)
    ImageDraw.Draw(mask).rectangle((pad["left"], pad["up"], pad["left"] + image.width - 1,
                                    pad["up"] + image.height - 1), fill=0)
    return canvas, mask


def directions_of(value: Any, title: str) -> tuple[str, ...]:
    """The chosen sides, in A1111's order, from a list of names (or one name / a comma-separated text)."""
    if value is None:
        value = []
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple, set)):
        raise UserError(f"{title}: the outpainting direction must be a list of sides ({', '.join(SIDES)}), "
                        f"got {value!r}.")
    wanted = {str(side).strip().lower() for side in value}
    unknown = sorted(wanted - set(SIDES))
    if unknown:
        raise UserError(f"{title}: unknown outpainting direction(s) {', '.join(map(repr, unknown))}; choose from: "
                        f"{', '.join(SIDES)}.")
    if not wanted:
        raise UserError(f"{title}: choose at least one outpainting direction ({', '.join(SIDES)}).")
    return tuple(side for side in SIDES if side in wanted)


def number(value: Any, name: str, bounds: tuple[float, float], title: str, whole: bool = True) -> float:
    """`value` as a number within `bounds` (inclusive; a whole one when `whole`), or a UserError naming the
    control."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{title}: {name} must be a number, got {value!r}.") from None
    if (whole and not result.is_integer()) or not bounds[0] <= result <= bounds[1]:
        kind = "a whole number" if whole else "a number"
        low, high = (int(bound) for bound in bounds) if whole else bounds
        raise UserError(f"{title}: {name} must be {kind} from {low} to {high}, got {value!r}.")
    return result


def check_request(request: GenerationRequest, title: str) -> Image.Image:
    """The init image of an img2img request without an inpaint mask, or a UserError."""
    if request.mode == "txt2img" or request.init_image is None:
        raise UserError(f"{title} works in img2img only: it enlarges the img2img input picture.")
    if request.mask is not None:
        raise UserError(f"{title} makes its own mask of the new area: use it in img2img, without an inpaint mask.")
    return request.init_image
