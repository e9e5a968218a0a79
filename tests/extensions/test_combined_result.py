"""`CombinedResult` (extension API 1.6): grids in front, labels kept, comments de-duplicated."""

from __future__ import annotations

from PIL import Image

from modules.extensions.api import CombinedResult
from modules.types import GenerationRequest, GenerationResult


def _result(seed: int, comments: tuple[str, ...] = ()) -> GenerationResult:
    image = Image.new("RGB", (8, 8), (seed, 0, 0))
    return GenerationResult((image, image), (seed, seed + 1), (seed + 10, seed + 11), ("p", "p2"), ("n", "n2"),
                            (f"info {seed}", f"info {seed + 1}"), GenerationRequest(), comments=comments)


def test_pictures_then_grids_in_front_labelled_as_their_source() -> None:
    combined = CombinedResult()
    first, second = _result(1, ("note", "other")), _result(5, ("note",))
    combined.add_result(first)
    combined.add_result(second, first_only=True)
    grid, sub = Image.new("RGB", (16, 16)), Image.new("RGB", (16, 8))
    combined.put_first([grid, sub], like=first, infotext="grid info")
    result = combined.result(GenerationRequest(prompt="asked"), interrupted=True)
    assert result.images[:2] == (grid, sub) and len(result.images) == 5
    assert result.seeds == (1, 1, 1, 2, 5) and result.subseeds == (11, 11, 11, 12, 15)
    assert result.infotexts == ("grid info", "grid info", "info 1", "info 2", "info 5")
    assert result.prompts == ("p", "p", "p", "p2", "p") and result.negative_prompts[3] == "n2"
    assert result.comments == ("note", "other") and result.interrupted and result.request.prompt == "asked"


def test_a_grid_like_a_collected_picture_keeps_its_infotext() -> None:
    combined = CombinedResult()
    picture = Image.new("RGB", (8, 8))
    combined.add(picture, 7, 8, "own prompt", "own negative", "own info")
    combined.put_first([Image.new("RGB", (8, 8))])
    result = combined.result(GenerationRequest())
    assert result.seeds == (7, 7) and result.infotexts == ("own info", "own info") and len(combined) == 2
    assert CombinedResult().result(GenerationRequest()).images == ()
