"""The encoder's textual-inversion seam works with `modules.networks.embeddings` through a small adapter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager, Sequence

import torch
from transformers import PreTrainedModel

from modules.networks.embeddings import Embedding, EmbeddingMatcher, token_fixes
from modules.prompts.chunks import ChunkFix, EmbeddingHit
from modules.prompts.encode import EncodeOptions, PromptEncoder
from tests.core.helpers import SD1, tiny

BOS, EOS = 49406, 49407


@dataclass
class _Adapter:
    """What the lead wires: an `EmbeddingMatcher` and `token_fixes` for one encoder's vector key."""

    matcher: EmbeddingMatcher
    key: str = "*"

    def find(self, token_ids: Sequence[int], offset: int) -> EmbeddingHit | None:
        found = self.matcher.match(token_ids, offset)
        if found is None:
            return None
        embedding, name_tokens = found
        return EmbeddingHit(name_tokens, embedding.vectors[self.key], embedding)

    def apply(self, encoder: PreTrainedModel, fixes: Sequence[Sequence[ChunkFix]]) -> ContextManager[None]:
        return token_fixes(encoder, fixes)  # type: ignore[arg-type]  # ChunkFix has position and vectors


def test_embedding_vectors_reach_the_encoder_at_their_placeholders() -> None:
    components = tiny(SD1)
    tokenizer, encoder = components.tokenizers[0], components.text_encoders[0]
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(1))
    embedding = Embedding("sksstyle", Path("sksstyle.pt"), {"*": vectors})
    adapter = _Adapter(EmbeddingMatcher(tokenizer, {"sksstyle": embedding}))
    prompt_encoder = PromptEncoder(components, EncodeOptions(), [adapter])
    with torch.inference_mode():
        (ours,) = prompt_encoder.encode(["a photo in sksstyle"])
        body = tokenizer("a photo in", add_special_tokens=False)["input_ids"]
        ids = torch.tensor([[BOS, *body, 0, 0] + [EOS] * (76 - len(body) - 2)])
        with token_fixes(encoder, [[ChunkFix(1 + len(body), vectors, embedding)]]):  # type: ignore[list-item]
            expected = encoder(ids)[0]
        plain = PromptEncoder(components, EncodeOptions()).encode(["a photo in sksstyle"])[0]
    assert torch.equal(ours.states, expected[0]) and not torch.equal(ours.states, plain.states)
    assert list(prompt_encoder.used_embeddings.values()) == [embedding]
    assert not encoder.get_input_embeddings()._forward_hooks  # the seam restored the encoder
