"""Typed option views of a generation job (OutputOptions, RequestDefaults) and the output folder rule."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from modules.filenames import NameFields
from modules.job_options import OutputOptions, RequestDefaults, output_folder
from modules.paths import DataPaths
from modules.settings import Settings

DAY = NameFields(now=datetime.datetime(2024, 3, 9, 12))


def test_defaults_match_the_option_table() -> None:
    settings = Settings()
    assert OutputOptions.from_mapping(settings) == OutputOptions()
    assert RequestDefaults.from_mapping(settings) == RequestDefaults()
    for name, value in vars(OutputOptions()).items():
        assert settings[name] == value, name


def test_from_mapping_converts_and_ignores_unknown_keys() -> None:
    options = OutputOptions.from_mapping({"samples_save": "false", "jpeg_quality": "95", "grid_save": 0,
                                          "outdir_samples": None, "samples_format": "jpg", "unknown": 1})
    assert (options.samples_save, options.jpeg_quality, options.grid_save) == (False, 95, False)
    assert (options.outdir_samples, options.samples_format) == ("", "jpg")
    defaults = RequestDefaults.from_mapping({"CLIP_stop_at_last_layers": 2.0, "eta_ddim": 1})
    assert defaults == RequestDefaults(CLIP_stop_at_last_layers=2)
    assert isinstance(defaults.CLIP_stop_at_last_layers, int)


@pytest.mark.parametrize("mode, kind, folder", [
    ("txt2img", "samples", "outputs/txt2img-images"),
    ("img2img", "samples", "outputs/img2img-images"),
    ("inpaint", "samples", "outputs/img2img-images"),
    ("txt2img", "grids", "outputs/txt2img-grids"),
    ("img2img", "grids", "outputs/img2img-grids"),
    ("inpaint", "grids", "outputs/img2img-grids"),
])
def test_default_folders(tmp_path: Path, mode: str, kind: str, folder: str) -> None:
    paths = DataPaths(tmp_path)
    expected = tmp_path / folder / "2024-03-09"
    assert output_folder(OutputOptions(), paths, mode, kind, DAY) == expected  # type: ignore[arg-type]
    cleared = OutputOptions(outdir_txt2img_samples="", outdir_img2img_samples="", outdir_txt2img_grids="",
                            outdir_img2img_grids="")
    assert output_folder(cleared, paths, mode, kind, DAY) == expected  # type: ignore[arg-type]


def test_configured_folders(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "data")
    absolute = tmp_path / "elsewhere"
    options = OutputOptions(outdir_txt2img_samples="mine/t2i", outdir_img2img_grids=str(absolute))
    assert output_folder(options, paths, "txt2img", "samples", DAY) == tmp_path / "data/mine/t2i/2024-03-09"
    assert output_folder(options, paths, "inpaint", "grids", DAY) == absolute / "2024-03-09"
    shared = OutputOptions(outdir_samples="all", outdir_grids="grids", outdir_txt2img_samples="ignored")
    assert output_folder(shared, paths, "txt2img", "samples", DAY) == tmp_path / "data/all/2024-03-09"
    assert output_folder(shared, paths, "img2img", "samples", DAY) == tmp_path / "data/all/2024-03-09"
    assert output_folder(shared, paths, "txt2img", "grids", DAY) == tmp_path / "data/grids/2024-03-09"


def test_directory_pattern_and_save_to_dirs(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path)
    fields = NameFields(prompt="a red cat, sitting", seed=5, model_name="tiny", max_prompt_words=2,
                        now=datetime.datetime(2024, 3, 9, 12))
    base = tmp_path / "outputs/txt2img-images"
    assert output_folder(OutputOptions(save_to_dirs=False), paths, "txt2img", "samples", fields) == base
    assert output_folder(OutputOptions(save_to_dirs=False), paths, "txt2img", "grids", fields) == \
        tmp_path / "outputs/txt2img-grids/2024-03-09"  # grids have their own switch
    assert output_folder(OutputOptions(grid_save_to_dirs=False), paths, "txt2img", "grids", fields) == \
        tmp_path / "outputs/txt2img-grids"
    nested = OutputOptions(directories_filename_pattern="[model_name]/[date]/[prompt_words]")
    assert output_folder(nested, paths, "txt2img", "samples", fields) == base / "tiny/2024-03-09/a red"
    empty = OutputOptions(directories_filename_pattern="")  # A1111: [prompt_words]
    assert output_folder(empty, paths, "txt2img", "samples", fields) == base / "a red"
    escape = OutputOptions(directories_filename_pattern="../../[seed]/..")
    assert output_folder(escape, paths, "txt2img", "samples", fields) == base / "5"


def test_file_pattern_defaults_as_a1111() -> None:
    assert OutputOptions().file_pattern == "[seed]"
    assert OutputOptions(save_to_dirs=False).file_pattern == "[seed]-[prompt_spaces]"
    assert OutputOptions(samples_filename_pattern="[model_name]").file_pattern == "[model_name]"
