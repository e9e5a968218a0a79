"""The built-in always-on CFG Rescale extension equals diffusers' `guidance_rescale`, and is off by default."""

from __future__ import annotations

import pytest
import torch

from modules.core.generate import generate
from modules.errors import UserError
from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
from modules.extensions.loader import ExtensionRoot
from tests.core.helpers import LatentCapture, generators, reference_scheduler, sd_pipeline
from tests.extensions.helpers import REGISTRY, run_with_host, small_request, tiny_sd1

PROMPT, NEGATIVE = "a red cube", "blurry"


@pytest.fixture(scope="module")
def host() -> ExtensionHost:
    host = ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)])
    host.load()
    return host


def _ours(monkeypatch, host, phi):
    capture = LatentCapture(monkeypatch)
    base = small_request(prompt=PROMPT, negative_prompt=NEGATIVE, seed=11, steps=3, cfg_scale=9.0)
    request = host.scripts.request_from_api(None, [], {"cfg rescale": {"args": [phi]}}, base)
    generate(request, tiny_sd1(), REGISTRY.resolve("Euler"), hooks=host.hooks.step_hooks(request))
    return capture.last


@pytest.mark.slow
def test_equals_diffusers_guidance_rescale(monkeypatch, host):
    ours = _ours(monkeypatch, host, 0.7)
    components = tiny_sd1()
    pipeline = sd_pipeline(components, reference_scheduler(REGISTRY.resolve("Euler"), components))
    reference = pipeline([PROMPT], negative_prompt=[NEGATIVE], num_inference_steps=3, guidance_scale=9.0,
                         guidance_rescale=0.7, height=64, width=64, generator=generators([11]),
                         output_type="latent").images
    assert torch.equal(ours, reference)
    assert not torch.allclose(ours, _ours(monkeypatch, host, 0.0))  # it does change the result


def test_phi_zero_changes_nothing_and_phi_goes_into_the_infotext(host):
    plain = run_with_host(ExtensionHost(), small_request())
    off = run_with_host(host, small_request())  # no args sent: off
    assert off.images[0].tobytes() == plain.images[0].tobytes() and off.infotexts == plain.infotexts
    on = run_with_host(host, small_request(extension_args={"cfg_rescale": {"phi": 0.5}}))
    assert on.images[0].tobytes() != plain.images[0].tobytes()
    assert on.infotexts[0].endswith("CFG Rescale phi: 0.5")


def test_bad_phi_is_refused_before_generating(host):
    with pytest.raises(UserError, match="between 0 and 1"):
        host.hooks.before_job(small_request(extension_args={"cfg_rescale": {"phi": 3}}), {})
