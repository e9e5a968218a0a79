"""The gallery index (`modules.gallery.index`): updated by the real save path, searched, paged, rebuilt from the
output folders, and deleting to the trash."""

from __future__ import annotations

import datetime
import os
import threading
import types
from pathlib import Path

import pytest
from PIL import Image

from modules import images, infotext
from modules.bootstrap import build_app
from modules.cli import parse_args
from modules.extensions.host import ExtensionHost
from modules.gallery.index import GalleryIndex, GalleryQuery
from modules.job_options import OutputOptions
from modules.paths import DataPaths
from modules.picture_names import JobNames
from modules.processing import GenerationService
from modules.settings import Settings, SettingsStore
from modules.types import GenerationRequest


def text(prompt: str, *, seed: int = 1, model: str = "tiny", sampler: str = "Euler", negative: str = "") -> str:
    return infotext.build(prompt, negative, {"Steps": 4, "Sampler": sampler, "CFG scale": 7, "Seed": seed,
                                             "Size": "8x8", "Model": model})


def save(folder: Path, info: str | None, *, seed: int = 1, colour: int = 0, extension: str = "png") -> Path:
    return images.save_image(Image.new("RGB", (8, 6), (colour, 0, 0)), folder, seed=seed, infotext=info,
                             extension=extension)


def set_mtime(path: Path, when: datetime.datetime) -> None:
    stamp = when.timestamp()
    os.utime(path, (stamp, stamp))


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    return DataPaths(tmp_path)


@pytest.fixture
def index(paths: DataPaths) -> GalleryIndex:
    gallery = GalleryIndex.for_paths(paths, SettingsStore(Settings(), paths.config_file))
    yield gallery
    gallery.close()


def rows(gallery: GalleryIndex) -> list[tuple]:
    page = gallery.search(GalleryQuery(limit=10_000))
    return sorted((e.path, e.mtime, e.size, e.width, e.height, e.prompt, e.negative_prompt, e.model, e.sampler,
                   e.seed, e.date, e.infotext) for e in page.entries)


def test_the_real_save_path_records_samples_scripts_and_grids(paths: DataPaths, index: GalleryIndex) -> None:
    service = GenerationService(settings=None, models=None, samplers=None, networks=None,  # type: ignore[arg-type]
                                extensions=ExtensionHost(), styles=None, paths=paths,  # type: ignore[arg-type]
                                on_saved=index.record)
    request = GenerationRequest(prompt="a red fox", negative_prompt="blurry", seed=5, width=8, height=8)
    pictures = (Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8)))
    output = types.SimpleNamespace(images=pictures, seeds=(5, 6), first_pass_images=(None, None), incomplete=())
    texts = (text("a red fox", seed=5, negative="blurry"), text("a red fox", seed=6, negative="blurry"))
    names = JobNames(request)
    saved = service.save_outputs(request, output, texts, OutputOptions.from_mapping(Settings()),  # type: ignore
                                 names)
    service.save_script_image(request, Image.new("RGB", (8, 8)), text("scripted", seed=9), 9, Settings(), True,
                              names)
    service.save_grid(request, Image.new("RGB", (16, 8)), text("a red fox", seed=5), Settings(), None, names)

    page = index.search(GalleryQuery())
    assert page.total == 4 and len(saved) == 2
    stored = {entry.path for entry in page.entries}
    assert {index.stored_path(path) for path in saved} <= stored
    assert any(path.startswith("outputs/txt2img-grids/") for path in stored)
    fox = next(e for e in page.entries if e.seed == 6)
    assert (fox.prompt, fox.negative_prompt, fox.model, fox.sampler, fox.width, fox.height) == \
        ("a red fox", "blurry", "tiny", "Euler", 8, 8)
    assert fox.infotext == texts[1] and fox.date == datetime.date.today().isoformat()
    assert fox.file(paths.data_dir).is_file()


def test_build_app_wires_generation_and_extras_saves_to_the_gallery(tmp_path: Path) -> None:
    app = build_app(parse_args(["--data-dir", str(tmp_path)]))
    try:
        assert app.generation.on_saved == app.gallery.record  # type: ignore[attr-defined]
        assert app.gallery.data_dir == tmp_path
    finally:
        app.close()


def test_extras_saves_are_recorded(paths: DataPaths, index: GalleryIndex) -> None:
    from modules.cancel import CancelToken
    from modules.extras import ExtrasRequest, ExtrasService
    from modules.jobs.executor import JobContext
    from modules.upscalers.registry import UpscalerRegistry

    store = SettingsStore(Settings(), paths.config_file)
    service = ExtrasService(UpscalerRegistry(), store, paths, on_saved=index.record)
    source = Image.new("RGB", (8, 8))
    source.info["parameters"] = text("upscaled cat", seed=3)
    ctx = JobContext("j", CancelToken(), lambda event: None)
    service.run(ExtrasRequest(images=(source,), upscaler_1="Lanczos", save=True), ctx)
    [entry] = index.search(GalleryQuery(text="CAT")).entries
    assert entry.path.startswith("outputs/extras-images/") and entry.width == 16 and entry.seed == 3


@pytest.fixture
def filled(paths: DataPaths, index: GalleryIndex) -> GalleryIndex:
    day = datetime.datetime(2026, 3, 1, 12, 0)
    specs = [("Red fox in snow", "alpha", "Euler", 1), ("blue whale", "alpha", "DPM++ 2M", 2),
             ("a RED car", "beta", "Euler", 3), ("Ünïcode Straße", "beta", "DDIM", 4), ("green field", "alpha",
                                                                                       "Euler", 5)]
    for number, (prompt, model, sampler, seed) in enumerate(specs):
        path = save(paths.outputs / "txt2img-images" / "day", text(prompt, seed=seed, model=model, sampler=sampler,
                                                                  negative="red eyes" if seed == 5 else ""),
                    seed=seed)
        set_mtime(path, day + datetime.timedelta(days=number))
        index.record(path)
    return index


def test_search_by_prompt_model_sampler_seed_and_dates(filled: GalleryIndex) -> None:
    def seeds(**query) -> list[int | None]:
        return [entry.seed for entry in filled.search(GalleryQuery(**query)).entries]

    assert seeds() == [5, 4, 3, 2, 1]  # newest first
    assert seeds(text="red") == [3, 1]  # case-insensitive substring of the prompt
    assert seeds(text="red", in_negative=True) == [5, 3, 1]
    assert seeds(text="STRASSE") == [4]  # Unicode case folding (ß -> ss)
    assert seeds(text="üNÏ") == [4]
    assert seeds(model="alpha") == [5, 2, 1]
    assert seeds(sampler="Euler") == [5, 3, 1]
    assert seeds(model="alpha", sampler="Euler", text="fox") == [1]
    assert seeds(seed=4) == [4]
    assert seeds(date_from=datetime.date(2026, 3, 2), date_to=datetime.date(2026, 3, 4)) == [4, 3, 2]
    assert seeds(date_from=datetime.date(2026, 3, 5)) == [5]
    assert seeds(text="nothing like this") == []
    assert filled.models() == ["alpha", "beta"]
    assert filled.samplers() == ["DDIM", "DPM++ 2M", "Euler"]


def test_paging(filled: GalleryIndex) -> None:
    first = filled.search(GalleryQuery(limit=2))
    second = filled.search(GalleryQuery(limit=2, offset=2))
    last = filled.search(GalleryQuery(limit=2, offset=4))
    assert [e.seed for e in first.entries] == [5, 4] and [e.seed for e in second.entries] == [3, 2]
    assert [e.seed for e in last.entries] == [1]
    assert (first.total, first.pages, first.page, last.page) == (5, 3, 1, 3)
    assert filled.search(GalleryQuery(limit=2, offset=10)).entries == ()


def test_rebuild_from_the_folders_equals_the_live_index(paths: DataPaths, filled: GalleryIndex) -> None:
    extras = paths.outputs / "extras-images"
    filled.record(save(extras, text("upscaled", seed=8), seed=8))
    live = rows(filled)
    fresh = GalleryIndex.for_paths(paths, SettingsStore(Settings(), paths.config_file))
    fresh.db_path = paths.data_dir / "fresh.sqlite3"
    try:
        assert fresh.rebuild() == len(live) == 6
        assert rows(fresh) == live
        # the index follows the folders: a vanished file loses its row, a new one is added, unchanged ones kept
        gone = Path(paths.data_dir / live[0][0])
        gone.unlink()
        added = save(paths.outputs / "img2img-images" / "x", text("new one", seed=77), seed=77)
        assert fresh.rebuild() == 6
        assert [e.seed for e in fresh.search(GalleryQuery(text="new one")).entries] == [77]
        assert live[0][0] not in {row[0] for row in rows(fresh)}
        assert fresh.stored_path(added) in {row[0] for row in rows(fresh)}
    finally:
        fresh.close()


def test_rebuild_walks_configured_output_folders_but_not_the_trash(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "data")
    elsewhere = tmp_path / "elsewhere"
    store = SettingsStore(Settings().with_overrides({"outdir_samples": str(elsewhere)}), paths.config_file)
    gallery = GalleryIndex.for_paths(paths, store)
    try:
        outside = save(elsewhere / "day", text("outside", seed=1))
        save(paths.data_dir / "trash" / "outputs", text("trashed", seed=2))
        save(paths.outputs / "txt2img-images", text("inside", seed=3))
        assert gallery.rebuild() == 2
        stored = {e.path for e in gallery.search(GalleryQuery()).entries}
        assert stored == {str(outside), f"outputs/txt2img-images/{os.listdir(paths.outputs / 'txt2img-images')[0]}"}
    finally:
        gallery.close()


def test_delete_moves_file_and_sidecar_to_the_trash(paths: DataPaths, filled: GalleryIndex) -> None:
    [entry] = filled.search(GalleryQuery(seed=3)).entries
    source = entry.file(paths.data_dir)
    source.with_suffix(".txt").write_text(entry.infotext, encoding="utf-8")
    moved = filled.delete(entry.id)
    assert moved == paths.data_dir / "trash" / entry.path and moved.is_file()
    assert moved.with_suffix(".txt").read_text(encoding="utf-8") == entry.infotext
    assert not source.exists() and not source.with_suffix(".txt").exists()
    assert filled.get(entry.id) is None and filled.search(GalleryQuery(seed=3)).total == 0
    assert filled.rebuild() == 4  # the trash is not an output folder
    assert filled.delete(entry.id) is None
    # the same name deleted again does not overwrite what the trash holds
    again = save(source.parent, text("again", seed=3), seed=3)
    again.rename(source)
    filled.record(source)
    [entry] = filled.search(GalleryQuery(seed=3)).entries
    second = filled.delete(entry.id)
    assert second is not None and second != moved and moved.is_file() and second.is_file()


def test_corrupt_and_plain_pictures_are_indexed_without_parameters(paths: DataPaths, index: GalleryIndex) -> None:
    folder = paths.outputs / "txt2img-images"
    plain = save(folder, None, seed=1)
    corrupt = folder / "00099-2.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    jpeg = save(folder, text("in exif", seed=4), seed=4, extension="jpg")
    for path in (plain, corrupt, jpeg):
        index.record(path)
    index.record(folder / "missing.png")  # never raises
    page = index.search(GalleryQuery())
    by_path = {entry.path.rsplit("/", 1)[-1]: entry for entry in page.entries}
    assert page.total == 3
    assert by_path[plain.name].width == 8 and by_path[plain.name].infotext == "" and by_path[plain.name].seed is None
    assert by_path[corrupt.name].width is None and by_path[corrupt.name].prompt == ""
    assert by_path[jpeg.name].prompt == "in exif" and by_path[jpeg.name].seed == 4
    assert index.rebuild() == 3


def test_saving_and_searching_from_many_threads(paths: DataPaths, index: GalleryIndex) -> None:
    folder = paths.outputs / "txt2img-images"
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for number in range(5):
                index.record(save(folder, text(f"w{worker}", seed=worker * 100 + number), seed=number))
                index.search(GalleryQuery(text="w"))
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and index.count() == 20


def test_the_server_synchronises_the_index_at_start(tmp_path: Path) -> None:
    import webui

    app = build_app(parse_args(["--data-dir", str(tmp_path)]))
    try:
        save(app.paths.outputs / "txt2img-images" / "2026-01-02", text("made while the server was down"))
        webui._sync_gallery(app)
        assert [e.prompt for e in app.gallery.search(GalleryQuery()).entries] == ["made while the server was down"]
    finally:
        app.close()
