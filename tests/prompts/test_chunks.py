"""Chunking of prompts into 77-token windows exactly as A1111's `tokenize_line` (pure, bundled tokenizers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pytest
import torch

from modules.models.tiny import load_tokenizer
from modules.prompts.chunks import (
    CHUNK_LENGTH,
    ChunkSpec,
    EmbeddingHit,
    PromptChunk,
    count_tokens,
    padded_ids,
    tokenize_text,
)

BOS, EOS, COMMA, CAT, DOG = 49406, 49407, 267, 2368, 1929


@pytest.fixture(scope="module")
def clip_l():
    return load_tokenizer("clip_l")


@pytest.fixture(scope="module")
def openclip():
    return load_tokenizer("openclip")


def _body(chunk: PromptChunk) -> list[int]:
    """The chunk's prompt tokens (without BOS and the end/padding tokens)."""
    return [token for token in chunk.tokens[1:] if token != EOS]


def test_short_prompt_gives_the_ids_diffusers_tokenizes(clip_l, openclip) -> None:
    for tokenizer in (clip_l, openclip):
        text = "a cat on a mat, (not weighted"
        line = tokenize_text(tokenizer, text, emphasis="None")
        expected = tokenizer(text, padding="max_length", max_length=77, truncation=True).input_ids
        spec = ChunkSpec.for_tokenizer(tokenizer)
        assert len(line.chunks) == 1 and padded_ids(line.chunks[0], spec) == expected
    assert ChunkSpec.for_tokenizer(openclip).pad_id == 0 and ChunkSpec.for_tokenizer(clip_l).pad_id == EOS


def test_weights_follow_attention_syntax(clip_l) -> None:
    chunk = tokenize_text(clip_l, "(cat:1.5) on a [mat]").chunks[0]
    assert _body(chunk) == [CAT, 525, 320, 9063]
    assert chunk.multipliers[:6] == (1.0, 1.5, 1.0, 1.0, 1 / 1.1, 1.0)
    assert set(chunk.multipliers[5:]) == {1.0} and len(chunk.tokens) == len(chunk.multipliers) == 77


def test_emphasis_none_keeps_the_brackets_as_text(clip_l) -> None:
    chunk = tokenize_text(clip_l, "(cat:1.5)", emphasis="None").chunks[0]
    assert CAT in chunk.tokens and len(_body(chunk)) > 1 and set(chunk.multipliers) == {1.0}


def test_long_prompt_wraps_at_the_last_comma(clip_l) -> None:
    """70 tokens, a comma, 10 more: at token 76 the comma is 5 tokens back (<= 20), so its tail moves on."""
    text = "cat " * 70 + ", " + "dog " * 10
    line = tokenize_text(clip_l, text)
    first, second = line.chunks
    assert _body(first) == [CAT] * 70 + [COMMA] and _body(second) == [DOG] * 10
    assert first.tokens[0] == BOS and first.tokens[-1] == EOS and len(first.tokens) == 77
    assert line.token_count == CHUNK_LENGTH + 10
    # without word-wrap the chunk is simply cut after 75 tokens
    first, second = tokenize_text(clip_l, text, backtrack=0).chunks
    assert _body(first) == [CAT] * 70 + [COMMA] + [DOG] * 4 and _body(second) == [DOG] * 6


def test_comma_too_far_back_does_not_wrap(clip_l) -> None:
    text = "cat " * 50 + ", " + "dog " * 30  # the comma is 24 tokens from the end of the chunk
    first, second = tokenize_text(clip_l, text).chunks
    assert _body(first) == [CAT] * 50 + [COMMA] + [DOG] * 24 and _body(second) == [DOG] * 6


def test_break_starts_a_new_chunk(clip_l) -> None:
    line = tokenize_text(clip_l, "a cat BREAK a dog")
    assert [_body(chunk) for chunk in line.chunks] == [[320, CAT], [320, DOG]]
    assert line.token_count == CHUNK_LENGTH + 2
    assert len(tokenize_text(clip_l, "a cat BREAK").chunks) == 1  # nothing after BREAK: no empty chunk
    assert len(tokenize_text(clip_l, "a cat BREAK", emphasis="None").chunks[0].tokens) == 77


def test_count_tokens_like_the_a1111_counter(clip_l) -> None:
    assert count_tokens(clip_l, "a cat, sitting") == (4, 75)
    assert count_tokens(clip_l, "") == (0, 75)
    assert count_tokens(clip_l, "cat " * 80) == (80, 150)
    assert count_tokens(clip_l, "a BREAK b") == (76, 150)


def test_empty_text_is_one_empty_chunk(openclip) -> None:
    spec = ChunkSpec.for_tokenizer(openclip)
    line = tokenize_text(openclip, "", spec=spec)
    assert line.chunks == (spec.empty_chunk(),) and line.token_count == 0
    assert padded_ids(line.chunks[0], spec) == [BOS, EOS] + [0] * 75


@dataclass
class _FakeEmbeddings:
    """A textual-inversion lookup: the name 'dog' stands for `n` vectors."""

    n: int

    def find(self, token_ids: Sequence[int], offset: int) -> EmbeddingHit | None:
        if token_ids[offset] != DOG:
            return None
        return EmbeddingHit(1, torch.full((self.n, 4), 7.0), "dog-embedding")


def test_embedding_is_never_split_over_chunks(clip_l) -> None:
    line = tokenize_text(clip_l, "cat " * 73 + "dog", embeddings=_FakeEmbeddings(3), backtrack=0)
    first, second = line.chunks
    assert _body(first) == [CAT] * 73 and not first.fixes
    assert second.tokens[1:4] == (0, 0, 0) and second.fixes[0].position == 1  # BOS is position 0
    assert second.fixes[0].source == "dog-embedding"


def test_comma_wrap_carries_embedding_vectors_along(clip_l) -> None:
    line = tokenize_text(clip_l, "cat " * 70 + ", dog cat cat cat cat", embeddings=_FakeEmbeddings(2))
    first, second = line.chunks
    assert _body(first) == [CAT] * 70 + [COMMA] and not first.fixes
    assert second.tokens[1:3] == (0, 0) and [fix.position for fix in second.fixes] == [1]
