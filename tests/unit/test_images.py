"""Image saving/reading: A1111 file names, metadata round trips, no overwrites, safe concurrent saves."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image

from modules import images
from modules.errors import CorruptFile, InvalidRequest

INFOTEXT = "a cat, sitting: on a mat\nNegative prompt: ugly\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5"
UNICODE_INFOTEXT = "ünïcödé 猫 🐱, «quotes»\nNegative prompt: негатив\nSteps: 4, Sampler: DPM++ 2M, Seed: 7"


def _noise_image(mode: str = "RGB", size: tuple[int, int] = (24, 16)) -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4}[mode]
    pixels = np.random.default_rng(0).integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels, mode)


def test_png_pixels_and_infotext_round_trip(tmp_path: Path) -> None:
    original = _noise_image("RGBA")
    path = images.save_image(original, tmp_path / "out", seed=1234, infotext=INFOTEXT)
    assert path == tmp_path / "out" / "00000-1234.png"
    with Image.open(path) as loaded:
        assert loaded.format == "PNG"
        assert np.array_equal(np.asarray(loaded), np.asarray(original))
        assert loaded.info["parameters"] == INFOTEXT
        assert images.read_infotext(loaded) == INFOTEXT
    assert images.read_infotext_file(path) == INFOTEXT


@pytest.mark.parametrize("extension", ["png", "jpg", "jpeg", "webp"])
@pytest.mark.parametrize("text", [INFOTEXT, UNICODE_INFOTEXT])
def test_infotext_round_trip_all_formats(tmp_path: Path, extension: str, text: str) -> None:
    path = images.save_image(_noise_image("RGBA"), tmp_path, seed=9, infotext=text, extension=extension)
    assert path.name == f"00000-9.{extension}"
    assert images.read_infotext_file(path) == text
    with Image.open(path) as loaded:
        assert loaded.size == (24, 16)


def test_jpeg_user_comment_is_a1111_unicode_layout(tmp_path: Path) -> None:
    path = images.save_image(_noise_image(), tmp_path, seed=1, infotext=UNICODE_INFOTEXT, extension="jpg")
    with Image.open(path) as loaded:
        raw = loaded.getexif().get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment]
    assert raw == b"UNICODE\x00" + UNICODE_INFOTEXT.encode("utf_16_be")


def test_png_uses_itxt_only_for_non_latin1(tmp_path: Path) -> None:
    latin = images.save_image(_noise_image(), tmp_path, seed=1, infotext="café, Steps: 1").read_bytes()
    wide = images.save_image(_noise_image(), tmp_path, seed=2, infotext=UNICODE_INFOTEXT).read_bytes()
    assert b"tEXtparameters\x00" in latin and b"iTXt" not in latin
    assert b"iTXtparameters\x00" in wide


def test_no_infotext_means_no_metadata(tmp_path: Path) -> None:
    for extension in ("png", "jpg"):
        path = images.save_image(_noise_image(), tmp_path, seed=3, infotext=None, extension=extension)
        assert images.read_infotext_file(path) is None


def test_counter_is_one_above_highest_prefix(tmp_path: Path) -> None:
    for name in ("00007-1.png", "00003-2.jpg", "grid-0099.png", "notes.txt", "12abc.png", "00010.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert images.next_counter(tmp_path) == 11
    first = images.save_image(_noise_image(), tmp_path, seed=42, infotext=None)
    second = images.save_image(_noise_image(), tmp_path, seed=43, infotext=None)
    assert (first.name, second.name) == ("00011-42.png", "00012-43.png")
    assert images.next_counter(tmp_path / "missing") == 0


def test_never_overwrites_a_file_with_the_next_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = tmp_path / "00000-5.png"
    taken.write_bytes(b"precious")
    monkeypatch.setattr(images, "next_counter", lambda directory, basename="": 0)  # a stale counter, as in a race
    path = images.save_image(_noise_image(), tmp_path, seed=5, infotext=INFOTEXT)
    assert path.name == "00001-5.png"
    assert taken.read_bytes() == b"precious"
    assert not list(tmp_path.glob(".*.tmp"))


def test_fallback_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(source: object, target: object) -> None:
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(images.os, "link", no_links)
    (tmp_path / "00000-8.png").write_bytes(b"keep")
    monkeypatch.setattr(images, "next_counter", lambda directory, basename="": 0)
    path = images.save_image(_noise_image(), tmp_path, seed=8, infotext=INFOTEXT)
    assert path.name == "00001-8.png"
    assert (tmp_path / "00000-8.png").read_bytes() == b"keep"
    assert images.read_infotext_file(path) == INFOTEXT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000-8.png", "00001-8.png"]


def test_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash_midway(handle, *args: object) -> None:  # type: ignore[no-untyped-def]
        handle.write(b"\x89PNG half an image")
        raise OSError("disk full")

    monkeypatch.setattr(images, "_write_image", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        images.save_image(_noise_image(), tmp_path, seed=1, infotext=INFOTEXT)
    assert list(tmp_path.iterdir()) == []


def test_concurrent_saves_produce_distinct_files(tmp_path: Path) -> None:
    image = _noise_image()
    results: list[Path] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(seed: int) -> None:
        barrier.wait()
        for offset in range(3):
            path = images.save_image(image, tmp_path, seed=seed, infotext=f"seed {seed} #{offset}")
            with lock:
                results.append(path)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == len(set(results)) == 24
    counters = sorted(int(path.name.split("-")[0]) for path in results)
    assert counters == list(range(24))
    assert sorted(images.read_infotext_file(path) for path in results) == sorted(
        f"seed {seed} #{offset}" for seed in range(8) for offset in range(3)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in results)


def test_basename_pattern(tmp_path: Path) -> None:
    assert images.save_image(_noise_image(), tmp_path, seed=7, infotext=None, basename_pattern="").name == "00000.png"
    path = images.save_image(_noise_image(), tmp_path, seed=7, infotext=None, basename_pattern="x[seed]-[steps]/a:b")
    assert path.name == "00001-x7-[steps]_a_b.png"


def test_unsupported_extension(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="bmp"):
        images.save_image(_noise_image(), tmp_path, seed=1, infotext=None, extension="bmp")


def test_read_infotext_file_errors(tmp_path: Path) -> None:
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    with pytest.raises(CorruptFile, match="not an image"):
        images.read_infotext_file(not_image)
    with pytest.raises(CorruptFile, match="does not exist"):
        images.read_infotext_file(tmp_path / "missing.png")


def test_read_infotext_tolerates_odd_metadata() -> None:
    odd = Image.new("RGB", (2, 2))
    odd.info["exif"] = b"garbage, not exif"
    assert images.read_infotext(odd) is None
    odd.info["parameters"] = 12  # not text
    assert images.read_infotext(odd) is None
    gif_like = Image.new("P", (2, 2))
    gif_like.info["comment"] = b"from a gif"
    assert images.read_infotext(gif_like) == "from a gif"


def test_decode_user_comment_variants() -> None:
    text = "Steps: 20, 猫"
    assert images.decode_user_comment(b"UNICODE\x00" + text.encode("utf_16_be")) == text
    assert images.decode_user_comment(b"UNICODE\x00" + text.encode("utf_16_le")) == text
    assert images.decode_user_comment(b"ASCII\x00\x00\x00Steps: 20\x00") == "Steps: 20"
    assert images.decode_user_comment(b"\x00" * 8 + "ü".encode()) == "ü"


def test_pattern_fields_and_no_number(tmp_path: Path) -> None:
    from modules.filenames import NameFields

    fields = NameFields(seed=3, prompt="a cat", steps=20)
    path = images.save_image(_noise_image(), tmp_path, seed=3, infotext=None,
                             basename_pattern="[seed]-[steps]-[prompt]", fields=fields)
    assert path.name == "00000-3-20-a_cat.png"
    first = images.save_image(_noise_image(), tmp_path, seed=3, infotext=None, basename_pattern="[prompt]",
                              fields=fields, add_number=False)
    assert first.name == "a_cat.png"
    taken = images.save_image(_noise_image(), tmp_path, seed=3, infotext=None, basename_pattern="[prompt]",
                              fields=fields, add_number=False)
    assert taken.name == "00001-a_cat.png"  # never replaces the file with that name: numbered after all
    assert images.save_image(_noise_image(), tmp_path, seed=3, infotext=None, basename_pattern="[none]",
                             add_number=False).name == "00002.png"  # no name at all: the number is the name


def test_grid_names_and_text_file(tmp_path: Path) -> None:
    names = [images.save_image(_noise_image(), tmp_path, seed=1, infotext=INFOTEXT, basename_pattern="",
                               basename="grid", text_file=INFOTEXT).name for _ in range(2)]
    assert names == ["grid-0000.png", "grid-0001.png"]
    assert (tmp_path / "grid-0001.txt").read_text(encoding="utf-8") == INFOTEXT
    sample = images.save_image(_noise_image(), tmp_path, seed=1, infotext=None, text_file=UNICODE_INFOTEXT)
    assert sample.name == "00000-1.png"  # the grid-NNNN files do not count for the samples' numbers
    assert sample.with_suffix(".txt").read_text(encoding="utf-8") == UNICODE_INFOTEXT
    assert not list(tmp_path.glob(".*.tmp"))


def test_webp_lossless_keeps_every_pixel(tmp_path: Path) -> None:
    original = _noise_image()
    lossy = images.save_image(original, tmp_path, seed=1, infotext=INFOTEXT, extension="webp")
    lossless = images.save_image(original, tmp_path, seed=2, infotext=INFOTEXT, extension="webp", lossless=True)
    with Image.open(lossy) as a, Image.open(lossless) as b:
        assert a.convert("RGB").tobytes() != original.tobytes()
        assert b.convert("RGB").tobytes() == original.tobytes()
        assert images.read_infotext(b) == INFOTEXT
