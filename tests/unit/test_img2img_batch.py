"""img2img Batch planning: folders under the data directory, file listing, masks, PNG info and output names."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from modules.errors import InvalidRequest
from modules.img2img_batch import (
    PNG_INFO_PROPS,
    apply_png_info,
    output_pattern,
    plan_batch,
    png_info_params,
    read_png_info,
    resolve_folder,
)
from modules.types import GenerationRequest


def _picture(path: Path, text: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = None
    if text is not None:
        info = PngInfo()
        info.add_text("parameters", text)
    picture = Image.new("RGB", (8, 8), (10, 20, 30))
    if path.suffix == ".png":
        picture.save(path, pnginfo=info)
    else:
        picture.save(path)
    return path


def test_relative_folders_are_under_the_data_dir_and_outside_ones_are_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    assert resolve_folder("in", data, allow_outside=False, what="Input directory") == (data / "in").resolve()
    assert resolve_folder("  ", data, allow_outside=False, what="Output directory") is None
    assert resolve_folder(str(data / "x"), data, allow_outside=False, what="Output directory") == (data / "x").resolve()
    for outside in (str(tmp_path / "elsewhere"), "../elsewhere", "/etc"):
        with pytest.raises(InvalidRequest, match="outside the data directory.*--allow-batch-dirs-outside-data"):
            resolve_folder(outside, data, allow_outside=False, what="Input directory")
    assert resolve_folder("/etc", data, allow_outside=True, what="Input directory") == Path("/etc").resolve()


def test_plan_lists_images_in_natural_order_and_notes_other_files(tmp_path: Path) -> None:
    for name in ("img10.png", "img2.jpg", "IMG1.webp", "b.tiff"):
        _picture(tmp_path / "in" / name)
    (tmp_path / "in" / "notes.txt").write_text("x")
    (tmp_path / "in" / "sub").mkdir()
    _picture(tmp_path / "in" / "sub" / "deep.png")
    plan = plan_batch(tmp_path / "in")
    assert [item.image.name for item in plan.items] == ["b.tiff", "IMG1.webp", "img2.jpg", "img10.png"]
    assert all(item.mask is None and item.info == item.image for item in plan.items)
    assert len(plan.notes) == 1 and "notes.txt" in plan.notes[0] and "not images" in plan.notes[0]


def test_empty_or_missing_input_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="does not exist"):
        plan_batch(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    with pytest.raises(InvalidRequest, match="holds no images"):
        plan_batch(tmp_path / "empty")


def test_masks_match_by_file_name_with_any_extension(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c.png"):
        _picture(tmp_path / "in" / name)
    _picture(tmp_path / "masks" / "a.jpg")
    _picture(tmp_path / "masks" / "c.png")
    plan = plan_batch(tmp_path / "in", tmp_path / "masks")
    assert [(item.image.name, item.mask.name if item.mask else None) for item in plan.items] == \
        [("a.png", "a.jpg"), ("b.png", None), ("c.png", "c.png")]
    assert any("b.png" in note and "img2img" in note for note in plan.notes)
    # a single mask serves every picture (A1111)
    (tmp_path / "masks" / "c.png").unlink()
    assert {item.mask.name for item in plan_batch(tmp_path / "in", tmp_path / "masks").items if item.mask} == {"a.jpg"}
    assert all(item.mask is not None for item in plan_batch(tmp_path / "in", tmp_path / "masks").items)
    with pytest.raises(InvalidRequest, match="mask directory"):
        plan_batch(tmp_path / "in", tmp_path / "no-masks")


def test_png_info_parameters_from_a_png_made_here(tmp_path: Path) -> None:
    text = ("a castle\nNegative prompt: fog\n"
            "Steps: 12, Sampler: Euler a, Schedule type: Karras, CFG scale: 3.5, Seed: 77, Size: 64x64, "
            "Model hash: 0123456789, Model: tiny")
    _picture(tmp_path / "info" / "x.png", text)
    _picture(tmp_path / "in" / "x.png")
    plan = plan_batch(tmp_path / "in", info_dir=tmp_path / "info")
    assert plan.items[0].info == tmp_path / "info" / "x.png"
    read = read_png_info(plan.items[0].info)
    assert read_png_info(plan.items[0].image) is None and read_png_info(tmp_path / "none.png") is None
    assert png_info_params(read, PNG_INFO_PROPS) == {
        "Prompt": "a castle", "Negative prompt": "fog", "Steps": "12", "Sampler": "Euler a", "CFG scale": "3.5",
        "Seed": "77", "Model hash": "0123456789"}
    params = png_info_params(read, ["Prompt", "Seed", "Steps"])
    assert params == {"Prompt": "a castle", "Seed": "77", "Steps": "12"}
    base = GenerationRequest(prompt="oil painting", negative_prompt="ugly", seed=5, steps=30, cfg_scale=7.0,
                             sampler="DPM++ 2M", checkpoint="other.safetensors")
    request = apply_png_info(base, params)
    assert (request.prompt, request.negative_prompt, request.seed, request.steps) == \
        ("oil painting a castle", "ugly", 77, 12)
    assert (request.cfg_scale, request.sampler, request.checkpoint) == (7.0, "DPM++ 2M", "other.safetensors")
    full = apply_png_info(base, png_info_params(read, PNG_INFO_PROPS),
                          lambda model_hash: "tiny.safetensors" if model_hash == "0123456789" else None)
    assert (full.negative_prompt, full.cfg_scale, full.sampler, full.checkpoint) == \
        ("ugly fog", 3.5, "Euler a", "tiny.safetensors")
    assert apply_png_info(base, {"Model hash": "ffff"}).checkpoint == "other.safetensors"
    assert png_info_params(None, PNG_INFO_PROPS) == {}


def test_output_names_follow_the_input() -> None:
    assert output_pattern("cat", 0, 1) == "cat"
    assert [output_pattern("cat", index, 3) for index in range(3)] == ["cat-1", "cat-2", "cat-3"]
