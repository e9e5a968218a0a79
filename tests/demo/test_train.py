"""The demo model's training script: caption sampling and a deterministic (tiny) end-to-end run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel

from modules.models.identity import Family, ModelIdentity
from modules.models.loaders import load_tokenizer
from modules.models.probe import probe
from tools.demo_model.compare import differences
from tools.demo_model.dataset import HELD_OUT, make_scenes, training_combinations
from tools.demo_model.train import (
    CAPTION_DROPOUT,
    LOW_NOISE_BELOW,
    TEXT_CONFIG,
    UNET_CONFIG,
    CaptionSampler,
    TrainConfig,
    _denoiser_loss,
    parse_args,
    train,
    training_scheduler,
)


@pytest.fixture(scope="module")
def scenes() -> list:
    return make_scenes(512, seed=3)


def _combinations(sampler: CaptionSampler, ids: torch.Tensor) -> list[tuple[str, str, str] | None]:
    """The combination each row of ids captions (None for the empty caption)."""
    out: list[tuple[str, str, str] | None] = []
    for row in ids:
        if torch.equal(row, sampler.empty):
            out.append(None)
            continue
        match = (sampler.ids == row).all(dim=1).nonzero()
        out.append(sampler.combinations[int(match[0])])
    return out


HIGH = torch.full((512,), LOW_NOISE_BELOW)  # timesteps: the first of the "most steps"
LOW = torch.full((512,), LOW_NOISE_BELOW - 1)


def test_without_noise_captions_are_the_scenes_own_or_empty(scenes: list) -> None:
    sampler = CaptionSampler(load_tokenizer("clip_l"), scenes, seed=0, noise=0.0, noise_low=0.0)
    index = torch.arange(len(scenes))
    dropped = torch.arange(len(scenes)) % 10 == 0
    ids, mistaken = sampler(index, LOW, dropped)
    seen = _combinations(sampler, ids)
    assert not mistaken.any()
    assert [combo is None for combo in seen] == dropped.tolist()
    assert all(combo in (None, scene.combination) for combo, scene in zip(seen, scenes))


def _wrong_words(sampler: CaptionSampler, scenes: list, timesteps: torch.Tensor) -> tuple[list[int], int]:
    """(per attribute: how many named captions got it wrong, how many captions were not empty) over 4 draws."""
    index = torch.arange(len(scenes))
    wrong = [0, 0, 0]
    named = 0
    for _ in range(4):
        dropped = torch.rand(len(scenes), generator=torch.Generator().manual_seed(1)) < CAPTION_DROPOUT
        ids, mistaken = sampler(index, timesteps, dropped)
        for combo, scene, flagged in zip(_combinations(sampler, ids), scenes, mistaken.tolist()):
            assert flagged == (combo is not None and combo != scene.combination)
            if combo is None:
                continue
            named += 1
            assert combo in training_combinations() and combo not in HELD_OUT
            for slot in range(3):
                wrong[slot] += combo[slot] != scene.combination[slot]
    return wrong, named


def test_noisy_captions_change_single_attributes_within_training_combinations(scenes: list) -> None:
    sampler = CaptionSampler(load_tokenizer("clip_l"), scenes, seed=0, noise=0.1, noise_low=0.0)
    wrong, named = _wrong_words(sampler, scenes, HIGH)
    assert named > (1 - CAPTION_DROPOUT) * 4 * len(scenes) * 0.9
    for count in wrong:  # 10 % draws, minus draws of the same word or of a combination that is not trained
        assert 0.03 < count / named < 0.1


@pytest.mark.slow
def test_low_noise_steps_get_their_own_rate(scenes: list) -> None:
    sampler = CaptionSampler(load_tokenizer("clip_l"), scenes, seed=0, noise=0.0, noise_low=0.3)
    assert _wrong_words(sampler, scenes, HIGH)[0] == [0, 0, 0]
    wrong, named = _wrong_words(sampler, scenes, LOW)
    assert all(0.1 < count / named < 0.3 for count in wrong)


def test_partial_captions_name_a_proper_subset_of_the_scene(scenes: list) -> None:
    tokenizer = load_tokenizer("clip_l")
    sampler = CaptionSampler(tokenizer, scenes, seed=0, partial=0.5)
    index = torch.arange(len(scenes))
    dropped = torch.arange(len(scenes)) % 10 == 0
    ids, mistaken = sampler(index, HIGH, dropped)
    assert not mistaken.any()
    full = short = 0
    for row, scene, was_dropped in zip(ids, scenes, dropped.tolist()):
        words = tokenizer.decode(row[row != tokenizer.eos_token_id][1:]).split()
        if was_dropped:
            assert words == []
        elif torch.equal(row, sampler.ids[sampler.index[scene.combination]]):
            full += 1
        else:
            short += 1
            named = [word for word in scene.combination if word in words]
            assert 0 < len(named) < 3 and len(named) == len(set(words) - {"a", "an", "on", "shape", "background"})
    assert 0.35 < short / (full + short) < 0.65


def _parse(words: list[str]) -> tuple[str | None, str | None, str | None]:
    """(foreground, background, shape) a full or partial caption names (None where it names none)."""
    if "on" in words:
        subject, background = words[: words.index("on")], words[words.index("on") + 2]
    elif words[-1] == "background":
        subject, background = [], words[-2]
    else:
        subject, background = words, None
    shape = subject[-1] if subject and subject[-1] != "shape" else None
    return (subject[1] if len(subject) == 3 else None), background, shape


def test_partial_captions_flag_a_mistake_only_when_they_name_the_wrong_word(scenes: list) -> None:
    tokenizer = load_tokenizer("clip_l")
    sampler = CaptionSampler(tokenizer, scenes, seed=1, noise=0.3, partial=0.5)
    ids, mistaken = sampler(torch.arange(len(scenes)), HIGH, torch.zeros(len(scenes), dtype=torch.bool))
    for row, scene, flagged in zip(ids, scenes, mistaken.tolist()):
        named = _parse(tokenizer.decode(row[row != tokenizer.eos_token_id][1:]).split())
        assert flagged == any(word is not None and word != truth for word, truth in zip(named, scene.combination))
    assert 0 < int(mistaken.sum()) < len(scenes)


def test_same_seed_same_captions(scenes: list) -> None:
    tokenizer = load_tokenizer("clip_l")
    first, second = CaptionSampler(tokenizer, scenes, seed=5), CaptionSampler(tokenizer, scenes, seed=5)
    index = torch.arange(64)
    keep = torch.zeros(64, dtype=torch.bool)
    assert all(torch.equal(first(index, LOW[:64], keep)[0], second(index, LOW[:64], keep)[0]) for _ in range(3))


def test_spared_samples_train_the_unet_but_not_the_text_encoder() -> None:
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
    unet = UNet2DConditionModel(**UNET_CONFIG)
    scheduler = training_scheduler()
    latents, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    ids = torch.randint(0, 49406, (2, 77))
    timesteps = torch.tensor([100, 600])

    def gradients(spared: torch.Tensor | None) -> tuple[float, float]:
        text_encoder.zero_grad(set_to_none=True)
        unet.zero_grad(set_to_none=True)
        _denoiser_loss(unet, text_encoder, scheduler, latents, ids, noise, timesteps, spared).backward()
        text = sum(float(p.grad.abs().sum()) for p in text_encoder.parameters() if p.grad is not None)
        return text, sum(float(p.grad.abs().sum()) for p in unet.parameters() if p.grad is not None)

    all_text, all_unet = gradients(None)
    none_text, none_unet = gradients(torch.tensor([True, True]))
    assert all_text > 0 and none_text == 0 and none_unet == pytest.approx(all_unet)
    assert gradients(torch.tensor([False, False])) == (all_text, all_unet)


@pytest.fixture
def torch_state() -> Iterator[None]:
    """`train` sets torch's thread count and deterministic mode for the process: restore them afterwards."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


@pytest.mark.slow
@pytest.mark.usefixtures("torch_state")
def test_a_tiny_run_writes_the_same_loadable_sd1_file_twice_also_when_reusing_its_vae(tmp_path: Path) -> None:
    outputs = []
    for name, vae_from in (("a", None), ("b", None), ("c", tmp_path / "a.safetensors")):
        config = TrainConfig(out=tmp_path / f"{name}.safetensors", vae_steps=2, unet_steps=2, images=16,
                             vae_batch=2, unet_batch=4, threads=1, vae_from=vae_from)
        train(config)
        outputs.append(load_file(config.out))
    assert probe(tmp_path / "a.safetensors") == ModelIdentity(Family.SD1)
    first = outputs[0]
    for other in outputs[1:]:
        assert first.keys() == other.keys()
        assert all(torch.equal(first[key], other[key]) for key in first)


def test_the_command_line_defaults_are_the_shipped_recipe_and_can_be_overridden() -> None:
    assert parse_args([]) == TrainConfig()
    assert parse_args(["--no-spare-text-encoder"]).spare_text_encoder is False
    assert parse_args(["--caption-noise-low", "0", "--unet-steps", "10"]) == TrainConfig(caption_noise_low=0.0,
                                                                                          unet_steps=10)


def test_compare_tells_identical_models_from_different_ones(tmp_path: Path) -> None:
    first = {"w": torch.arange(4.0)}
    save_file(first, tmp_path / "a.safetensors", metadata={"x": "1", "y": "2"})
    save_file({"w": torch.arange(4.0)}, tmp_path / "b.safetensors", metadata={"y": "2", "x": "1"})
    save_file({"w": torch.arange(4.0) + 1e-6}, tmp_path / "c.safetensors", metadata={"x": "1", "y": "2"})
    assert differences(tmp_path / "a.safetensors", tmp_path / "b.safetensors") == []
    assert differences(tmp_path / "a.safetensors", tmp_path / "c.safetensors") == ["tensor w"]


@pytest.mark.slow
@pytest.mark.usefixtures("torch_state")
def test_a_tiny_run_with_caption_mistakes_and_a_spared_text_encoder(tmp_path: Path) -> None:
    config = TrainConfig(out=tmp_path / "m.safetensors", vae_steps=2, unet_steps=3, images=16, vae_batch=2,
                         unet_batch=8, threads=1, caption_noise=0.5, caption_noise_low=0.5,
                         spare_text_encoder=True)
    train(config)
    assert probe(config.out) == ModelIdentity(Family.SD1)
