"""The upscaler registry (A1111 names, case-insensitive, model folders) and hires fix's target sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules.core.plan import HiresTarget, hires_target
from modules.errors import InvalidRequest
from modules.upscalers.registry import MODEL_FOLDERS, UpscalerRegistry

LATENT_MODES = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}


def test_names_are_a1111s():
    registry = UpscalerRegistry()
    assert [u.name for u in registry.image_upscalers()] == ["None", "Lanczos", "Nearest"]
    assert [u.name for u in registry.latent_modes()] == list(LATENT_MODES)
    assert registry.names()[0] == "Latent"


@pytest.mark.parametrize("name", ["latent (BICUBIC antialiased)", "LANCZOS", " nearest "])
def test_names_match_case_insensitively(name):
    assert UpscalerRegistry().find(name).name.lower() == name.strip().lower()


def test_empty_name_is_latent():
    assert UpscalerRegistry().find(None).name == UpscalerRegistry().find("").name == "Latent"


@pytest.mark.parametrize("name", list(LATENT_MODES))
def test_latent_modes_interpolate_as_a1111(name):
    latents = torch.randn(2, 4, 8, 6, generator=torch.Generator().manual_seed(0))
    mode, antialias = LATENT_MODES[name]
    expected = torch.nn.functional.interpolate(latents, size=(16, 12), mode=mode, antialias=antialias)
    assert torch.equal(UpscalerRegistry().find(name).upscale_latents(latents, 16, 12), expected)


def _picture() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))


@pytest.mark.parametrize("name, resample", [("None", Image.Resampling.LANCZOS),
                                            ("Lanczos", Image.Resampling.LANCZOS),
                                            ("Nearest", Image.Resampling.NEAREST)])
def test_image_upscalers_resize_with_their_filter(name, resample):
    picture = _picture()
    result = UpscalerRegistry().find(name).upscale_image(picture, 64, 48)
    assert np.array_equal(np.asarray(result), np.asarray(picture.resize((64, 48), resample=resample)))


def test_image_upscaler_reaches_a_size_that_is_not_a_multiple_of_its_scale():
    assert UpscalerRegistry().find("Nearest").upscale_image(_picture(), 50, 37).size == (50, 37)


def test_upscale_by_follows_a1111s_upscaler_upscale():
    """A1111's `Upscaler.upscale(img, scale)` (SD upscale): passes by the scale, then Lanczos to the size rounded
    down to a multiple of 8; "None" makes only that resize."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 45, 3), dtype=np.uint8))
    registry = UpscalerRegistry()
    nearest = registry.find("Nearest").upscale_by(image, 2.5)
    passed = image.resize((112, 75), resample=Image.Resampling.NEAREST)
    assert np.array_equal(np.asarray(nearest), np.asarray(passed.resize((112, 72), Image.Resampling.LANCZOS)))
    none = registry.find("None").upscale_by(image, 2.0)
    assert np.array_equal(np.asarray(none), np.asarray(image.resize((88, 56), Image.Resampling.LANCZOS)))
    with pytest.raises(ValueError, match="latent"):
        registry.find("Latent").upscale_by(image, 2.0)


def test_an_absent_model_name_names_the_folders_searched(tmp_path):
    with pytest.raises(InvalidRequest) as error:
        UpscalerRegistry(tmp_path / "models").find("4x_foolhardy_Remacri")
    for folder in MODEL_FOLDERS:
        assert str(tmp_path / "models" / folder) in str(error.value)
    assert "Lanczos" in str(error.value)


def test_an_empty_model_file_is_refused_with_the_reason(tmp_path):
    (tmp_path / "models" / "RealESRGAN").mkdir(parents=True)
    (tmp_path / "models" / "RealESRGAN" / "RealESRGAN_x4plus.pth").write_bytes(b"")
    with pytest.raises(InvalidRequest, match="RealESRGAN_x4plus.pth"):
        UpscalerRegistry(tmp_path / "models").find("realesrgan_x4plus")


@pytest.mark.parametrize("size, scale, resize, target", [
    ((512, 512), 2.0, (0, 0), HiresTarget((1024, 1024))),
    ((512, 768), 1.3, (0, 0), HiresTarget((665, 998))),
    ((512, 768), 2.0, (1024, 0), HiresTarget((1024, 1536))),
    ((512, 768), 2.0, (0, 1000), HiresTarget((666, 1000))),
    ((512, 512), 2.0, (1024, 768), HiresTarget((1024, 1024), (0, 32))),  # cover, then crop the height
    ((768, 512), 2.0, (1024, 1024), HiresTarget((1536, 1024), (64, 0))),
])
def test_hires_target_follows_a1111(size, scale, resize, target):
    assert hires_target(*size, scale, *resize) == target
