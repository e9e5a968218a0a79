"""Textual inversion and LoRA through the real App (`bootstrap.build_app`): prompt -> job -> images + infotext."""

from __future__ import annotations

import hashlib
import logging
from typing import Iterator

import pytest
import torch

from modules import infotext
from modules.app import App
from modules.bootstrap import build_app
from modules.cli import LaunchOptions
from modules.networks.lora import addnet_sha256
from modules.types import GenerationRequest, GenerationResult
from tests.networks.app_data import EMBEDDING, LORA, NetworkFiles, write_network_data

SMALL = {"width": 64, "height": 64, "steps": 2, "sampler": "Euler", "cfg_scale": 5.0, "seed": 11}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, NetworkFiles]]:
    data_dir = tmp_path_factory.mktemp("networks_app")
    files = write_network_data(data_dir)
    app = build_app(LaunchOptions(data_dir=data_dir))
    yield app, files
    app.close()


def run(app: App, prompt: str, **fields: object) -> GenerationResult:
    request = GenerationRequest(mode="txt2img", prompt=prompt, **{**SMALL, **fields})  # type: ignore[arg-type]
    return app.submit(request, save=False).outcome(timeout=120)


def weights(app: App) -> dict[str, torch.Tensor]:
    with app.models.get() as components:
        modules = [("unet", components.unet), *((f"te{i}", te) for i, te in enumerate(components.text_encoders))]
        return {f"{name}.{key}": value.detach().clone()
                for name, module in modules for key, value in module.state_dict().items()}


@pytest.mark.slow
def test_lora_changes_the_image_writes_its_hash_and_restores_the_model(world) -> None:
    app, files = world
    plain = run(app, "red square")
    before = weights(app)
    with_lora = run(app, f"red square <lora:{LORA}:1>")
    after = weights(app)
    assert with_lora.images[0].tobytes() != plain.images[0].tobytes()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    text = with_lora.infotexts[0]
    assert f'Lora hashes: "{LORA}: {addnet_sha256(files.lora)[:12]}"' in text
    assert text.startswith(f"red square <lora:{LORA}:1>\n")  # the infotext keeps the tag (A1111)
    assert "Lora hashes" not in plain.infotexts[0]
    assert run(app, "red square").images[0].tobytes() == plain.images[0].tobytes()


@pytest.mark.slow
def test_lora_multipliers_follow_the_tag(world) -> None:
    app, _ = world
    full = run(app, f"red square <lora:{LORA}:1>")
    half = run(app, f"red square <lora:{LORA}:0.5>")
    off = run(app, f"red square <lora:{LORA}:0>")
    assert half.images[0].tobytes() != full.images[0].tobytes()
    assert off.images[0].tobytes() == run(app, "red square").images[0].tobytes()


@pytest.mark.slow
def test_embedding_in_the_prompt_changes_the_image_and_writes_its_hash(world) -> None:
    app, files = world
    without = run(app, "a photo in style")
    with_embedding = run(app, f"a photo in {EMBEDDING}")
    assert with_embedding.images[0].tobytes() != without.images[0].tobytes()
    expected = hashlib.sha256(files.embedding.read_bytes()).hexdigest()[:12]
    params = infotext.parse(with_embedding.infotexts[0]).params
    assert params["TI hashes"] == f"{EMBEDDING}: {expected}"
    assert "TI hashes" not in without.infotexts[0]


def test_embedding_in_the_negative_prompt_is_reported_too(world) -> None:
    app, _ = world
    result = run(app, "a photo", negative_prompt=f"{EMBEDDING}, blurry")
    assert f'TI hashes: "{EMBEDDING}: ' in result.infotexts[0]


@pytest.mark.slow
def test_unknown_lora_is_logged_and_the_job_still_runs(world, caplog: pytest.LogCaptureFixture) -> None:
    app, _ = world
    with caplog.at_level(logging.WARNING, logger="modules.networks.service"):
        result = run(app, "red square <lora:no_such_lora:1>")
    assert len(result.images) == 1 and "Lora hashes" not in result.infotexts[0]
    assert any("Networks not found: no_such_lora" in record.getMessage() for record in caplog.records)
    assert result.images[0].tobytes() == run(app, "red square ").images[0].tobytes()


def test_files_added_later_are_found_without_a_restart(world) -> None:
    app, files = world
    copy = files.lora.with_name("second.safetensors")
    copy.write_bytes(files.lora.read_bytes())
    try:
        result = run(app, "red square <lora:second:1>")
        assert 'Lora hashes: "second: ' in result.infotexts[0]
    finally:
        copy.unlink()


@pytest.mark.slow
def test_lora_for_another_model_family_is_skipped_and_reported(world, caplog: pytest.LogCaptureFixture) -> None:
    """A1111: the job runs without it, the infotext is what it would be, and the result says "Networks with
    errors"; the other LoRA of the prompt still applies."""
    from modules.api.results import info_object
    from modules.ui.results import infotext_html
    from tests.networks.helpers import write_lora

    app, files = world
    foreign = files.lora.with_name("xl_style.safetensors")
    write_lora(foreign, {"lora_unet_input_blocks_9_1_proj_in.lora_down.weight": torch.zeros(2, 8),
                         "lora_unet_input_blocks_9_1_proj_in.lora_up.weight": torch.zeros(8, 2),
                         "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(2, 8),
                         "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": torch.zeros(8, 2)})
    try:
        with caplog.at_level(logging.WARNING, logger="modules.networks.lora"):
            result = run(app, "red square <lora:xl_style:0.8>")
        assert result.comments == ("Networks with errors: xl_style (2)",)
        assert result.images[0].tobytes() == run(app, "red square").images[0].tobytes()
        assert result.infotexts[0].startswith("red square <lora:xl_style:0.8>\n")
        assert 'Lora hashes: "xl_style: ' in result.infotexts[0]
        assert any("xl_style.safetensors skipped" in record.getMessage() for record in caplog.records)
        assert info_object(result, "20240101000000")["comments"] == "Networks with errors: xl_style (2)\n"
        assert "<p class='comments'>Networks with errors: xl_style (2)</p>" in infotext_html(result)
        both = run(app, f"red square <lora:xl_style:1> <lora:{LORA}:1>")
        assert both.comments == result.comments
        assert both.images[0].tobytes() == run(app, f"red square <lora:{LORA}:1>").images[0].tobytes()
        assert run(app, "red square").comments == ()
    finally:
        foreign.unlink()


@pytest.mark.slow
def test_a_hires_prompt_with_other_loras_switches_them_for_the_second_pass(world) -> None:
    """A1111's hires prompt activates its own extra networks for the second pass: its LoRAs instead of the first
    prompt's, none when it names none; the first prompt's come back for the next batch, bit for bit."""
    app, files = world
    hires = {"enable_hr": True, "hr_upscaler": "Lanczos", "hr_scale": 2.0, "denoising_strength": 0.6}
    tag = f"<lora:{LORA}:1>"
    before = weights(app)
    both = run(app, f"red square {tag}", **hires)
    same = run(app, f"red square {tag}", hr_prompt=f"red square {tag}", **hires)
    assert same.images[0].tobytes() == both.images[0].tobytes()  # the same LoRAs: nothing switches
    plain = run(app, "red square", **hires)
    second_only = run(app, "red square", hr_prompt=f"red square {tag}", **hires)
    first_only = run(app, f"red square {tag}", hr_prompt="red square", **hires)
    pictures = [result.images[0].tobytes() for result in (both, plain, second_only, first_only)]
    assert len(set(pictures)) == 4  # the LoRA in both passes, in none, only in the second, only in the first
    assert f"{LORA}: {addnet_sha256(files.lora)[:12]}" in second_only.infotexts[0]  # A1111 records both passes'
    assert "Hires prompt: red square" in first_only.infotexts[0]
    twice = run(app, f"red square {tag}", hr_prompt="red square", n_iter=2, **hires)
    alone = run(app, f"red square {tag}", hr_prompt="red square", **{**hires, "seed": 12})
    assert twice.images[1].tobytes() == alone.images[0].tobytes()  # batch 2's first pass had the LoRA again
    after = weights(app)
    assert all(torch.equal(before[key], after[key]) for key in before)
