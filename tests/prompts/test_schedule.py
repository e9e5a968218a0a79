"""The conditioning schedule of a batch: prompt editing, alternation, AND parts, extra networks, lengths."""

from __future__ import annotations

import torch

from modules.core.conditioning import encode_prompts
from modules.prompts.encode import EncodeOptions, PromptEncoder
from tests.core.helpers import SD1, SDXL, tiny


def _encoder(identity=SD1) -> PromptEncoder:
    return PromptEncoder(tiny(identity), EncodeOptions())


def _alone(text: str, identity=SD1) -> torch.Tensor:
    return _encoder(identity).encode([text])[0].states


def test_prompt_editing_switches_after_the_end_step() -> None:
    """A1111: `[a:b:0.5]` at 10 steps ends `a` at step 5; sampler steps 0-5 (0-based) use it, 6-9 use `b`."""
    with torch.inference_mode():
        schedule = encode_prompts(_encoder(), ["a [cat:dog:0.5]"], [""], 10)
        cat, dog = _alone("a cat"), _alone("a dog")
        used = [schedule.at_step(step).cond[0] for step in range(10)]
    assert [torch.equal(row, cat) for row in used] == [True] * 6 + [False] * 4
    assert all(torch.equal(row, dog) for row in used[6:])
    assert schedule.selection(0) == schedule.selection(5) and schedule.selection(5) != schedule.selection(6)


def test_alternation_changes_every_step() -> None:
    """A1111 plans `[a|b]` for steps 1..N and looks it up with its 0-based call counter (`step <= end`), so the
    first option serves calls 0 and 1, and the options then alternate."""
    with torch.inference_mode():
        schedule = encode_prompts(_encoder(), ["[cat|dog] photo"], ["[cat|dog] photo"], 5)
        cat, dog = _alone("cat photo"), _alone("dog photo")
        conds = [schedule.at_step(step) for step in range(5)]
    for conditioning, expected in zip(conds, [cat, cat, dog, cat, dog], strict=True):
        assert torch.equal(conditioning.cond[0], expected) and torch.equal(conditioning.uncond[0], expected)


def test_and_parts_become_weighted_rows() -> None:
    with torch.inference_mode():
        schedule = encode_prompts(_encoder(), ["a cat AND a dog :0.5", "a mat"], ["", ""], 4)
        conditioning = schedule.at_step(0)
    assert conditioning.parts == (((0, 1.0), (1, 0.5)), ((2, 1.0),))
    assert conditioning.cond.shape == (3, 77, 32) and conditioning.uncond.shape == (2, 77, 32)
    assert torch.equal(conditioning.cond[1], _alone("a dog"))
    with torch.inference_mode():
        plain = encode_prompts(_encoder(), ["a cat", "a AND b"], ["AND", "x"], 4).at_step(0)
    assert plain.parts == (((0, 1.0),), ((1, 1.0), (2, 1.0)))
    with torch.inference_mode():
        assert encode_prompts(_encoder(), ["a cat"], ["a AND b"], 4).at_step(0).parts is None  # negative: text


def test_extra_networks_are_removed_and_returned() -> None:
    with torch.inference_mode():
        schedule = encode_prompts(_encoder(), ["<lora:film grain:0.8>a cat"], ["<lora:x:1> blurry"], 4)
        conditioning = schedule.at_step(0)
        with_tag_text = _alone("<lora:x:1> blurry")
    assert [(ref.kind, ref.name, ref.args) for ref in schedule.extra_networks] == [("lora", "film grain", ("0.8",))]
    assert torch.equal(conditioning.cond[0], _alone("a cat"))
    assert torch.equal(conditioning.uncond[0], with_tag_text)  # A1111 parses networks from the prompt only


def test_negative_is_padded_only_with_pad_cond_uncond() -> None:
    long = "cat " * 80
    with torch.inference_mode():
        unpadded = encode_prompts(_encoder(), [long], ["blurry"], 4).at_step(0)
        padded = encode_prompts(_encoder(), [long], ["blurry"], 4, pad_cond_uncond=True).at_step(0)
        empty = _alone("")
    assert unpadded.cond.shape == (1, 154, 32) and unpadded.uncond.shape == (1, 77, 32)
    assert padded.uncond.shape == (1, 154, 32)
    assert torch.equal(padded.uncond[0, :77], _alone("blurry")) and torch.equal(padded.uncond[0, 77:], empty)


def test_prompts_of_a_batch_with_different_lengths_repeat_their_last_vector() -> None:
    with torch.inference_mode():
        conditioning = encode_prompts(_encoder(), ["cat " * 80, "a dog"], ["", ""], 4).at_step(0)
        dog = _alone("a dog")
    assert conditioning.cond.shape == (2, 154, 32)
    assert torch.equal(conditioning.cond[1, :77], dog)
    assert torch.equal(conditioning.cond[1, 77:], dog[-1:].expand(77, -1))


def test_sdxl_schedule_has_pooled_rows_and_zero_empty_negative() -> None:
    with torch.inference_mode():
        conditioning = encode_prompts(_encoder(SDXL), ["cat " * 80 + "BREAK a dog"], [""], 4).at_step(0)
    assert conditioning.cond.shape == (1, 231, 64) and conditioning.pooled.shape == (1, 32)
    assert conditioning.uncond.shape == (1, 77, 64) and not conditioning.uncond.any()
    assert not conditioning.uncond_pooled.any()
