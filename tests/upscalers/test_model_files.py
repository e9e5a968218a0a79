"""Upscaler model files: listed, identified with spandrel, run in tiles, broken files reported, never a crash."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules.errors import Interrupted, InvalidRequest, UnsupportedModel
from modules.upscalers.model_files import load_model, probe_file, run_model
from modules.upscalers.registry import ModelUpscaler, UpscaleContext, UpscalerRegistry, scale_from_name
from modules.upscalers.tiling import plan_tiles, run_tiled
from tests.upscalers.helpers import compact_net, save_compact, save_esrgan


def _picture(width: int = 40, height: int = 28, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture
def models_dir(tmp_path):
    save_compact(tmp_path / "models" / "RealESRGAN" / "RealESRGAN_x2plus.pth", scale=2)
    save_compact(tmp_path / "models" / "ESRGAN" / "4x-Compact.safetensors", scale=4, seed=1)
    save_esrgan(tmp_path / "models" / "ESRGAN" / "tiny_esrgan.pth")
    (tmp_path / "models" / "ESRGAN" / "truncated.pth").write_bytes(b"PK\x03\x04 not really a zip")
    save_file_with_foreign_keys(tmp_path / "models" / "SwinIR" / "mystery.safetensors")
    (tmp_path / "models" / "ESRGAN" / "notes.txt").write_text("not a model")
    return tmp_path / "models"


def save_file_with_foreign_keys(path):
    from safetensors.torch import save_file
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"some.weight": torch.zeros(3, 3)}, str(path))


def _holder(path):
    from contextlib import contextmanager

    @contextmanager
    def hold(file):
        yield load_model(file, torch.device("cpu"), torch.float32)
    return hold


def test_model_files_are_listed_by_stem_after_the_built_ins(models_dir):
    registry = UpscalerRegistry(models_dir)
    names = [u.name for u in registry.image_upscalers()]
    assert names == ["None", "Lanczos", "Nearest", "4x-Compact", "RealESRGAN_x2plus", "tiny_esrgan"]
    folders = {u.name: u.folder for u in registry.model_upscalers()}
    assert folders == {"4x-Compact": "ESRGAN", "RealESRGAN_x2plus": "RealESRGAN", "tiny_esrgan": "ESRGAN"}


def test_a_folder_kept_elsewhere_is_searched_under_its_a1111_name(models_dir, tmp_path):
    """A1111's --esrgan-models-path and the like: the folder's own name does not matter."""
    elsewhere = tmp_path / "shared" / "upscalers"
    save_compact(elsewhere / "2x-Elsewhere.pth", scale=2, seed=3)
    registry = UpscalerRegistry(models_dir, folders={"ESRGAN": elsewhere})
    folders = {u.name: u.folder for u in registry.model_upscalers()}
    assert folders == {"2x-Elsewhere": "ESRGAN", "RealESRGAN_x2plus": "RealESRGAN"}
    assert elsewhere in registry.model_folders() and models_dir / "ESRGAN" not in registry.model_folders()


def test_broken_files_are_listed_with_a_reason_and_refused_by_name(models_dir):
    registry = UpscalerRegistry(models_dir)
    broken = {file.name: file.reason for file in registry.broken()}
    assert set(broken) == {"truncated", "mystery"}
    assert "truncated.pth" in broken["truncated"]
    assert "unknown architecture" in broken["mystery"]
    with pytest.raises(InvalidRequest, match="cannot be used: .*unknown architecture"):
        registry.find("mystery")


def test_probe_identifies_architectures(models_dir):
    assert probe_file(models_dir / "RealESRGAN" / "RealESRGAN_x2plus.pth").architecture == "RealESRGAN Compact"
    assert probe_file(models_dir / "ESRGAN" / "tiny_esrgan.pth").architecture == "ESRGAN"


def test_an_absent_name_names_every_folder_searched(models_dir):
    with pytest.raises(InvalidRequest) as error:
        UpscalerRegistry(models_dir).find("4x_foolhardy_Remacri")
    for folder in ("ESRGAN", "RealESRGAN", "SwinIR", "ScuNET", "DAT", "HAT"):
        assert str(models_dir / folder) in str(error.value)


@pytest.mark.parametrize("stem, scale", [("4x_foolhardy_Remacri", 4), ("RealESRGAN_x4plus", 4),
                                         ("2x-AnimeSharpV4", 2), ("RealESRGAN_x2plus", 2), ("SwinIR_L", 4),
                                         ("ScuNET", 4), ("1x_ReFocus", 1), ("x8_big", 8)])
def test_scale_from_name(stem, scale):
    assert scale_from_name(stem) == scale


def test_a_loaded_model_gives_output_of_its_scale(models_dir):
    for name, scale in (("RealESRGAN_x2plus", 2), ("4x-Compact", 4), ("tiny_esrgan", 4)):
        model = load_model(UpscalerRegistry(models_dir).find(name).path, torch.device("cpu"), torch.float32)
        assert model.scale == scale
        assert run_model(model, _picture(), 0, 0).size == (40 * scale, 28 * scale)


def test_a_model_upscaler_reaches_the_exact_size_a1111s_way(models_dir):
    registry = UpscalerRegistry(models_dir, hold=_holder(models_dir))
    upscaler = registry.find("realesrgan_x2plus")  # any case
    assert isinstance(upscaler, ModelUpscaler)
    picture = _picture()
    model = load_model(upscaler.path, torch.device("cpu"), torch.float32)
    once = run_model(model, picture, 0, 0)
    twice = run_model(model, once, 0, 0)  # 3x needs two passes of a 2x model, then Lanczos down
    expected = twice.resize((120 // 8 * 8, 84 // 8 * 8), Image.Resampling.LANCZOS).resize((120, 84),
                                                                                        Image.Resampling.LANCZOS)
    result = upscaler.upscale_image(picture, 120, 84, UpscaleContext(tile=0))
    assert np.array_equal(np.asarray(result), np.asarray(expected))


def test_upscale_by_runs_model_passes_as_a1111s_upscaler_upscale(models_dir):
    """SD upscale's enlargement: a 2x model at scale 3 runs twice, then Lanczos to the size rounded down to 8."""
    registry = UpscalerRegistry(models_dir, hold=_holder(models_dir))
    upscaler = registry.find("RealESRGAN_x2plus")
    picture = _picture()
    model = load_model(upscaler.path, torch.device("cpu"), torch.float32)
    twice = run_model(model, run_model(model, picture, 0, 0), 0, 0)
    expected = twice.resize((120, 80), Image.Resampling.LANCZOS)  # 40x28 * 3 = 120x84 -> multiples of 8
    result = upscaler.upscale_by(picture, 3.0, UpscaleContext(tile=0))
    assert np.array_equal(np.asarray(result), np.asarray(expected))


def test_tiled_and_untiled_agree_when_the_overlap_covers_the_receptive_field():
    net = compact_net(scale=2)
    image = torch.rand(1, 3, 37, 53)
    with torch.inference_mode():
        whole = net(image)
        tiled = run_tiled(net, image, tile=16, overlap=4)  # 2 body convs + head + tail: radius 4
        seams = run_tiled(net, image, tile=16, overlap=0)
    assert tiled.shape == whole.shape == (1, 3, 74, 106)
    assert torch.allclose(tiled, whole, atol=1e-5)
    assert not torch.allclose(seams, whole, atol=1e-3)  # without context the tile borders differ


def test_tiles_cover_the_picture_once():
    tiles = plan_tiles(37, 53, 16, 4)
    covered = np.zeros((37, 53), dtype=int)
    for tile in tiles:
        covered[tile.top:tile.bottom, tile.left:tile.right] += 1
        assert tile.in_top == max(0, tile.top - 4) and tile.in_right == min(53, tile.right + 4)
    assert (covered == 1).all() and len(tiles) == 3 * 4
    assert len(plan_tiles(37, 53, 0, 8)) == 1 == len(plan_tiles(37, 53, 64, 8))


def test_progress_per_tile_and_interrupt_between_tiles():
    net = compact_net()
    seen = []
    with torch.inference_mode():
        run_tiled(net, torch.rand(1, 3, 32, 32), 16, 4, on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    calls = iter([False, False, True])
    with pytest.raises(Interrupted), torch.inference_mode():
        run_tiled(net, torch.rand(1, 3, 32, 32), 16, 4, should_stop=lambda: next(calls))


def test_alpha_is_kept_and_grey_pictures_work(models_dir):
    model = load_model(models_dir / "RealESRGAN" / "RealESRGAN_x2plus.pth", torch.device("cpu"), torch.float32)
    rgba = _picture().convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 100))
    result = run_model(model, rgba, 0, 0)
    assert result.mode == "RGBA" and result.size == (80, 56) and result.getchannel("A").getextrema() == (100, 100)
    assert run_model(model, _picture().convert("L"), 0, 0).mode == "RGB"


def test_loading_a_broken_file_is_a_clear_error(models_dir):
    with pytest.raises(UnsupportedModel, match="unknown architecture"):
        load_model(models_dir / "SwinIR" / "mystery.safetensors", torch.device("cpu"), torch.float32)


@pytest.mark.slow
def test_a_face_restoration_model_is_not_an_upscaler(tmp_path):
    from spandrel.architectures.GFPGAN import GFPGAN
    path = tmp_path / "models" / "ESRGAN" / "GFPGANv1.4.pth"
    path.parent.mkdir(parents=True)
    torch.save({"params_ema": GFPGAN().state_dict()}, path)
    registry = UpscalerRegistry(tmp_path / "models")
    assert [file.reason for file in registry.broken()] == [
        "GFPGANv1.4.pth: a face restoration model (GFPGAN), not an upscaler."]
    assert "GFPGANv1.4" not in registry.names()
