"""Text embeddings with A1111 semantics on tiny models: diffusers equality for plain prompts, emphasis computed
by hand, chunk concatenation, SDXL pooled output and clip skip."""

from __future__ import annotations

import pytest
import torch

from modules.errors import InvalidRequest
from modules.models.components import ComponentSet
from modules.models.tiny import build_tiny_components
from modules.prompts.encode import EncodeOptions, PromptEncoder
from modules.samplers.registry import default_registry
from tests.core.helpers import SD1, SD2_V, SDXL, SDXL_REFINER, reference_scheduler, sd_pipeline, sdxl_pipeline, tiny

EULER = default_registry().resolve("Euler")
BOS, EOS, CAT = 49406, 49407, 2368


@pytest.fixture(scope="module")
def weighted_sd1() -> ComponentSet:
    """Tiny SD1 whose final layer norm has a bias: the freshly initialised one (bias 0) gives hidden states of
    mean ~1e-9, which makes the emphasis rescaling `mean_before / mean_after` pure rounding noise."""
    components = build_tiny_components(SD1, seed=0)
    norm = components.text_encoders[0].final_layer_norm
    with torch.no_grad():
        norm.bias.copy_(torch.randn(norm.bias.shape, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.2)
    return components


def _ids(body: list[int], pad: int = EOS) -> torch.Tensor:
    return torch.tensor([[BOS, *body, EOS] + [pad] * (75 - len(body))])


@pytest.mark.parametrize("identity", [SD1, SD2_V])
def test_plain_prompt_equals_diffusers_encode_prompt(identity) -> None:
    components = tiny(identity)
    pipeline = sd_pipeline(components, reference_scheduler(EULER, components))
    with torch.inference_mode():
        expected, expected_negative = pipeline.encode_prompt("a red cube, on a table", "cpu", 1, True, "blurry")
        encoder = PromptEncoder(components, EncodeOptions())
        (ours,), (negative,) = encoder.encode(["a red cube, on a table"]), encoder.encode(["blurry"], True)
    assert torch.equal(ours.states, expected[0]) and torch.equal(negative.states, expected_negative[0])


def test_sdxl_plain_prompt_equals_diffusers_encode_prompt() -> None:
    components = tiny(SDXL)
    pipeline = sdxl_pipeline(components, reference_scheduler(EULER, components))
    with torch.inference_mode():
        embeds, _, pooled, _ = pipeline.encode_prompt("a red cube", device="cpu", negative_prompt="blurry")
        (ours,) = PromptEncoder(components, EncodeOptions()).encode(["a red cube"])
    assert torch.equal(ours.states, embeds[0]) and torch.equal(ours.pooled, pooled[0])


def test_weighted_prompt_equals_the_a1111_formula_by_hand(weighted_sd1: ComponentSet) -> None:
    components = weighted_sd1
    encoder = components.text_encoders[0]
    with torch.inference_mode():
        (ours,) = PromptEncoder(components, EncodeOptions()).encode(["(cat:1.5) on a mat"])
        z = encoder(_ids([CAT, 525, 320, 9063]))[0]
        weights = torch.ones(1, 77, 1)
        weights[0, 1] = 1.5
        weighted = z * weights
        expected = weighted * (z.mean() / weighted.mean())
        (no_norm,) = PromptEncoder(components, EncodeOptions(emphasis="No norm")).encode(["(cat:1.5) on a mat"])
        (ignored,) = PromptEncoder(components, EncodeOptions(emphasis="Ignore")).encode(["(cat:1.5) on a mat"])
    torch.testing.assert_close(ours.states, expected[0], rtol=0, atol=1e-6)
    assert not torch.equal(ours.states, z[0])
    torch.testing.assert_close(no_norm.states, weighted[0], rtol=0, atol=0)
    assert torch.equal(ignored.states, z[0])


def test_long_prompt_is_encoded_chunk_by_chunk() -> None:
    components = tiny(SD1)
    text = "cat " * 70 + ", " + "dog " * 10
    with torch.inference_mode():
        (ours,) = PromptEncoder(components, EncodeOptions()).encode([text])
        first = components.text_encoders[0](_ids([CAT] * 70 + [267]))[0]
        second = components.text_encoders[0](_ids([1929] * 10))[0]
    assert ours.states.shape == (154, 32)
    assert torch.equal(ours.states[:77], first[0]) and torch.equal(ours.states[77:], second[0])


def test_group_gets_empty_chunks_and_shares_the_emphasis_mean(weighted_sd1: ComponentSet) -> None:
    """A1111 encodes one prompt's scheduled texts together: shorter ones get empty chunks, and the "Original"
    normalisation uses the mean over the whole group."""
    components = weighted_sd1
    encoder = components.text_encoders[0]
    with torch.inference_mode():
        short, long = PromptEncoder(components, EncodeOptions()).encode(["(cat:1.5)", "cat " * 80])
        z = encoder(torch.cat([_ids([CAT]), _ids([CAT] * 75)]))[0]
        empty = encoder(_ids([]))[0]
        weights = torch.ones(2, 77, 1)
        weights[0, 1] = 1.5
        expected = z * weights * (z.mean() / (z * weights).mean())
    assert short.states.shape == long.states.shape == (154, 32)
    torch.testing.assert_close(short.states[:77], expected[0], rtol=0, atol=1e-6)
    assert torch.equal(short.states[77:], empty[0])


def test_repeated_texts_are_encoded_once_but_weigh_in_the_group_mean(weighted_sd1: ComponentSet) -> None:
    """`[(cat:1.5)|dog]` schedules (cat, dog, cat): A1111 encodes three rows; the mean must count cat twice."""
    components = weighted_sd1
    encoder = components.text_encoders[0]
    with torch.inference_mode():
        first, dog, third = PromptEncoder(components, EncodeOptions()).encode(["(cat:1.5)", "dog", "(cat:1.5)"])
        z = encoder(torch.cat([_ids([CAT]), _ids([1929]), _ids([CAT])]))[0]
        weights = torch.ones(3, 77, 1)
        weights[0, 1] = weights[2, 1] = 1.5
        expected = z * weights * (z.mean() / (z * weights).mean())
    assert first is third
    torch.testing.assert_close(first.states, expected[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(dog.states, expected[1], rtol=0, atol=1e-6)


def test_sdxl_chunks_both_encoders_and_pools_the_first_chunk() -> None:
    components = tiny(SDXL)
    clip_l, clip_g = components.text_encoders
    with torch.inference_mode():
        (ours,) = PromptEncoder(components, EncodeOptions()).encode(["cat " * 75 + "cat"])
        first_l = clip_l(_ids([CAT] * 75), output_hidden_states=True).hidden_states[-2]
        out_g = clip_g(_ids([CAT] * 75, pad=0), output_hidden_states=True)
        second_g = clip_g(_ids([CAT], pad=0), output_hidden_states=True).hidden_states[-2]
    assert ours.states.shape == (154, 64)
    assert torch.equal(ours.states[:77, :32], first_l[0])
    assert torch.equal(ours.states[:77, 32:], out_g.hidden_states[-2][0])
    assert torch.equal(ours.states[77:, 32:], second_g[0])
    assert torch.equal(ours.pooled, out_g.text_embeds[0])


def test_sdxl_empty_negative_is_zero_and_refiner_has_one_encoder() -> None:
    with torch.inference_mode():
        (negative,) = PromptEncoder(tiny(SDXL), EncodeOptions()).encode([""], negative=True)
        (refined,) = PromptEncoder(tiny(SDXL_REFINER), EncodeOptions()).encode(["a cat"])
    assert not negative.states.any() and not negative.pooled.any() and negative.states.shape == (77, 64)
    assert refined.states.shape == (77, 32) and refined.pooled.shape == (32,)


def test_clip_skip_takes_an_earlier_layer_through_the_final_norm() -> None:
    components = tiny(SD1)
    encoder = components.text_encoders[0]
    with torch.inference_mode():
        (ours,) = PromptEncoder(components, EncodeOptions(clip_skip=2)).encode(["cat"])
        hidden = encoder(_ids([CAT]), output_hidden_states=True).hidden_states[-2]
        expected = encoder.final_layer_norm(hidden)
    assert torch.equal(ours.states, expected[0])
    with pytest.raises(InvalidRequest, match="clip_skip"):
        PromptEncoder(components, EncodeOptions(clip_skip=9))


def test_groups_are_cached_for_the_job() -> None:
    encoder = PromptEncoder(tiny(SD1), EncodeOptions())
    with torch.inference_mode():
        first = encoder.encode(["a cat"])
        assert encoder.encode(["a cat"]) is first
        assert encoder.encode(["a cat"], negative=True) is not first
