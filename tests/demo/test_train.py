"""The demo model's training script: caption sampling and a deterministic (tiny) end-to-end run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modules.models.identity import Family, ModelIdentity
from modules.models.loaders import load_tokenizer
from modules.models.probe import probe
from tools.demo_model.dataset import HELD_OUT, make_scenes, training_combinations
from tools.demo_model.train import CAPTION_DROPOUT, CaptionSampler, TrainConfig, train


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


def test_without_noise_captions_are_the_scenes_own_or_empty(scenes: list) -> None:
    sampler = CaptionSampler(load_tokenizer("clip_l"), scenes, seed=0, noise=0.0)
    index = torch.arange(len(scenes))
    seen = _combinations(sampler, sampler(index))
    empty = sum(combo is None for combo in seen)
    assert 0.05 < empty / len(scenes) < 0.15  # CAPTION_DROPOUT
    assert all(combo in (None, scene.combination) for combo, scene in zip(seen, scenes))


def test_noisy_captions_change_single_attributes_within_training_combinations(scenes: list) -> None:
    sampler = CaptionSampler(load_tokenizer("clip_l"), scenes, seed=0, noise=0.1)
    index = torch.arange(len(scenes))
    wrong = [0, 0, 0]
    named = 0
    for _ in range(4):
        for combo, scene in zip(_combinations(sampler, sampler(index)), scenes):
            if combo is None:
                continue
            named += 1
            assert combo in training_combinations() and combo not in HELD_OUT
            for slot in range(3):
                wrong[slot] += combo[slot] != scene.combination[slot]
    assert named > (1 - CAPTION_DROPOUT) * 4 * len(scenes) * 0.9
    for count in wrong:  # 10 % draws, minus draws of the same word or of a combination that is not trained
        assert 0.03 < count / named < 0.1


def test_same_seed_same_captions(scenes: list) -> None:
    tokenizer = load_tokenizer("clip_l")
    first, second = CaptionSampler(tokenizer, scenes, seed=5), CaptionSampler(tokenizer, scenes, seed=5)
    index = torch.arange(64)
    assert all(torch.equal(first(index), second(index)) for _ in range(3))


@pytest.fixture
def torch_state() -> Iterator[None]:
    """`train` sets torch's thread count and deterministic mode for the process: restore them afterwards."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


@pytest.mark.usefixtures("torch_state")
def test_a_tiny_run_writes_the_same_loadable_sd1_file_twice(tmp_path: Path) -> None:
    outputs = []
    for name in ("a", "b"):
        config = TrainConfig(out=tmp_path / f"{name}.safetensors", vae_steps=2, unet_steps=2, images=16,
                             vae_batch=2, unet_batch=4, threads=1)
        train(config)
        outputs.append(config.out)
    assert probe(outputs[0]) == ModelIdentity(Family.SD1)
    first, second = load_file(outputs[0]), load_file(outputs[1])
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)
