"""The results panel's Save and Zip (`modules.manual_save`): which pictures, where, log.csv, the archive."""

from __future__ import annotations

import csv
import dataclasses
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from modules import images
from modules.job_options import OutputOptions
from modules.manual_save import LOG_COLUMNS, SaveButtonOptions, chosen_indices, save_result
from modules.types import GenerationRequest
from tests.ui.fakes import fake_result

REQUEST = GenerationRequest(prompt="a red fox", negative_prompt="blurry", seed=40, batch_size=2, width=8, height=8,
                            sampler="Euler")


def _with_grid(result):  # type: ignore[no-untyped-def]
    grid = Image.new("RGB", (16, 8), (1, 2, 3))
    return dataclasses.replace(result, images=(grid, *result.images), seeds=result.seeds[:1] + result.seeds,
                               subseeds=result.subseeds[:1] + result.subseeds,
                               prompts=result.prompts[:1] + result.prompts,
                               negative_prompts=result.negative_prompts[:1] + result.negative_prompts,
                               infotexts=result.infotexts[:1] + result.infotexts, grids=1)


def _rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def test_which_pictures_a_click_saves() -> None:
    plain, gridded = fake_result(REQUEST), _with_grid(fake_result(REQUEST))
    assert chosen_indices(plain, 1, True) == [1]
    assert chosen_indices(plain, None, True) == [0, 1]  # nothing selected: all
    assert chosen_indices(plain, 1, False) == [0, 1]
    assert chosen_indices(gridded, 0, True) == [0, 1, 2]  # the grid selected: all, the grid too (A1111)
    assert chosen_indices(gridded, 2, True) == [2]


def test_save_the_selected_picture_with_its_infotext_and_a_log_row(tmp_path: Path) -> None:
    result = _with_grid(fake_result(REQUEST))
    heard: list[Path] = []
    saved = save_result(result, 2, OutputOptions(), SaveButtonOptions(), tmp_path, on_saved=heard.append)
    folder = tmp_path / "log" / "images"
    assert saved.pictures == (folder / "00000-41.png",) and saved.archive is None and heard == list(saved.pictures)
    assert images.read_infotext_file(saved.pictures[0]) == result.infotexts[2]
    again = save_result(result, 2, OutputOptions(), SaveButtonOptions(), tmp_path)
    assert again.pictures == (folder / "00001-41.png",)  # a second click never replaces the first file
    rows = _rows(folder / "log.csv")
    assert rows[0] == list(LOG_COLUMNS) and len(rows) == 3
    assert rows[1] == ["a red fox", "40", "8", "8", "Euler", "7", "20", "00000-41.png", "blurry", "tiny",
                       "0123456789"]


def test_zip_packs_every_picture_and_text_file(tmp_path: Path) -> None:
    result = fake_result(REQUEST)
    output = OutputOptions(save_txt=True, samples_filename_pattern="[seed]-[prompt_words]")
    options = SaveButtonOptions(save_selected_only=False, grid_zip_filename_pattern="fox-[seed]-[seed_last]")
    saved = save_result(result, 0, output, options, tmp_path, make_zip=True)
    names = [path.name for path in saved.pictures]
    assert names == ["00000-40-a red fox.png", "00000-40-a red fox.txt", "00001-41-a red fox.png",
                     "00001-41-a red fox.txt"]
    assert saved.archive == tmp_path / "log/images/fox-40-41.zip" and saved.downloads == [saved.archive]
    with zipfile.ZipFile(saved.archive) as archive:
        assert archive.namelist() == names
        assert archive.read("00001-41-a red fox.txt").decode() == result.infotexts[1]
    second = save_result(result, 0, output, options, tmp_path, make_zip=True)
    assert second.archive == tmp_path / "log/images/fox-40-41-1.zip"  # never over the first archive
    default = save_result(result, 0, output, SaveButtonOptions(), tmp_path, make_zip=True)
    assert default.archive is not None and default.archive.name.endswith("_[tiny]_40-41.zip")


def test_folders_and_an_older_log_is_set_aside(tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "log.csv").write_text("prompt,seed,filename\nold,1,x.png\n", encoding="utf-8")
    options = SaveButtonOptions(outdir_save=str(folder), use_save_to_dirs_for_ui=True)
    output = OutputOptions(directories_filename_pattern="[prompt_words]", directories_max_prompt_words=2)
    saved = save_result(fake_result(REQUEST), 0, output, options, tmp_path)
    assert saved.pictures == (folder / "a red" / "00000-40.png",)
    assert (folder / "log.csv.bak").read_text(encoding="utf-8") == "prompt,seed,filename\nold,1,x.png\n"
    assert _rows(folder / "log.csv")[0] == list(LOG_COLUMNS)
    with pytest.raises(ValueError, match="generate one first"):
        save_result(fake_result(REQUEST, count=0), None, output, options, tmp_path)
