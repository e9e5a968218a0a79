"""Job admission: the working-memory estimate, the advice when a job does not fit, the batch caps, and both checks
(at submission against the device's total, when the job starts against what is free)."""

from __future__ import annotations

import pytest
import torch

from modules.core import memory
from modules.core.generate import generate
from modules.core.memory import DeviceMemory, check_fits, estimate_job
from modules.core.validate import MAX_BATCH_COUNT, MAX_BATCH_SIZE
from modules.errors import InvalidRequest, JobTooLarge
from modules.models.identity import Family, ModelIdentity
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest
from tests.core.helpers import SD1, tiny

SDXL = ModelIdentity(Family.SDXL)
GiB = 2**30


def _total(**fields) -> int:
    return estimate_job(GenerationRequest(**fields), ModelIdentity(Family.SD1), torch.float16).total


def test_the_estimate_grows_with_batch_size_count_and_pixels():
    base = _total(width=512, height=512)
    assert _total(width=512, height=512, batch_size=4) > base
    assert _total(width=512, height=512, n_iter=4) > base
    assert _total(width=1024, height=1024) > base
    big = estimate_job(GenerationRequest(width=1024, height=1024), ModelIdentity(Family.SD1), torch.float16)
    small = estimate_job(GenerationRequest(width=512, height=512), ModelIdentity(Family.SD1), torch.float16)
    assert big.parts["UNet"] - memory.UNET_WORKSPACE == 4 * (small.parts["UNet"] - memory.UNET_WORKSPACE)
    # the VAE is bounded by one 512x512 tile (it tiles what does not fit) plus the float output picture
    assert big.parts["VAE decode"] - small.parts["VAE decode"] == (1024 * 1024 - 512 * 512) * 12
    assert _total(width=512, height=512, cfg_scale=1.0) < base  # one UNet row per image without guidance


def test_hires_fix_is_estimated_at_its_target_size():
    plain = _total(width=512, height=512)
    assert _total(width=512, height=512, enable_hr=True, hr_scale=2.0) == pytest.approx(
        _total(width=1024, height=1024), rel=0.02)
    assert _total(width=512, height=512, enable_hr=False, hr_scale=4.0) == plain


def test_fp16_needs_less_than_fp32_and_sdxl_conditioning_is_wider():
    request = GenerationRequest(width=1024, height=1024, batch_size=2)
    sd1 = ModelIdentity(Family.SD1)
    half, full = estimate_job(request, sd1, torch.float16), estimate_job(request, sd1, torch.float32)
    assert half.total < full.total
    assert estimate_job(request, SDXL, torch.float16).parts["text conditioning"] > half.parts["text conditioning"]


def test_a_job_that_does_not_fit_is_refused_with_the_batch_size_that_fits():
    request = GenerationRequest(width=512, height=512, batch_size=64)
    limit = estimate_job(request.with_changes(batch_size=5), ModelIdentity(Family.SD1), torch.float32).total
    with pytest.raises(JobTooLarge, match=r"about .* GiB .*than the .* in the test: a batch size of 5 fits\.") as error:
        check_fits(request, ModelIdentity(Family.SD1), torch.float32, limit, "in the test")
    assert error.value.http_status == 413
    assert check_fits(request.with_changes(batch_size=5), ModelIdentity(Family.SD1), torch.float32, limit,
                      "in the test").total <= limit


def test_advice_when_even_one_image_is_too_large():
    with pytest.raises(JobTooLarge, match="lower the image size"):
        check_fits(GenerationRequest(width=4096, height=4096), SDXL, torch.float16, GiB, "here")
    many = GenerationRequest(width=512, height=512, n_iter=1000)
    limit = estimate_job(many.with_changes(n_iter=1), SDXL, torch.float16).total
    with pytest.raises(JobTooLarge, match="fewer pictures per job"):
        check_fits(many, SDXL, torch.float16, limit, "here")


@pytest.mark.parametrize(("fields", "message"), [
    ({"batch_size": MAX_BATCH_SIZE + 1}, f"batch_size must be between 1 and {MAX_BATCH_SIZE}"),
    ({"n_iter": MAX_BATCH_COUNT + 1}, f"between 1 and {MAX_BATCH_COUNT}"),
])
def test_batch_caps(fields, message):
    request = GenerationRequest(width=64, height=64, steps=1, **fields)
    with pytest.raises(InvalidRequest, match=message):
        generate(request, tiny(SD1), default_registry().resolve("Euler"))


def test_the_core_refuses_a_job_that_does_not_fit_in_free_memory_before_sampling(monkeypatch):
    monkeypatch.setattr(memory, "device_memory", lambda device: DeviceMemory("test memory", 8 * GiB, GiB))
    calls: list[int] = []
    request = GenerationRequest(width=2048, height=2048, steps=1)
    with pytest.raises(JobTooLarge, match="free in test memory now: lower the image size"):
        generate(request, tiny(SD1), default_registry().resolve("Euler"), hooks=[lambda ctx: calls.append(1)])
    assert calls == []
