"""Text encoders -> embeddings with A1111's prompt semantics (chunks of 75, emphasis, clip skip, SDXL pooled).

`PromptEncoder` encodes the texts of a "group" (what A1111 encodes in one call: the scheduled texts of one prompt
or `AND` part) with one model's text encoders:
1. every text is cut into chunks (`modules.prompts.chunks`); shorter texts get empty chunks up to the group's length;
2. chunk i of all texts is encoded as one batch, each chunk alone, and chunks are concatenated on the sequence axis;
3. emphasis (option `emphasis`) scales each token's hidden state by its weight: "Original" then restores the
   group's mean, "No norm" does not, "Ignore" drops the weights, "None" parses no attention syntax at all;
   a chunk whose weights are all 1 is untouched, bit for bit;
4. layers: SD1/SD2 the last hidden state, or `hidden_states[-N]` through the final layer norm for clip skip N > 1;
   SDXL the penultimate states of both encoders (CLIP-L follows clip skip only with `sdxl_clip_l_skip`) and the
   pooled output of the first chunk of the second encoder. SDXL negatives empty for the whole group become
   all-zero embeddings and pooled vectors (A1111's rule).
Groups are cached by their texts for the encoder's life (one job). Textual inversion plugs in through
`TextualInversion` (one per text encoder; `modules.networks` implements it).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import ContextManager, Protocol, Sequence

import torch
from transformers import PreTrainedModel

from modules.devices import execution_device
from modules.errors import InvalidRequest
from modules.models.components import ComponentSet
from modules.models.identity import Family
from modules.prompts.chunks import (
    EMPHASIS_MODES,
    ChunkFix,
    ChunkSpec,
    EmbeddingLookup,
    PromptChunk,
    padded_ids,
    tokenize_text,
)

log = logging.getLogger(__name__)


class TextualInversion(EmbeddingLookup, Protocol):
    """The textual-inversion seam for one text encoder: find names (see `EmbeddingLookup`) and apply vectors."""

    def apply(self, encoder: PreTrainedModel, fixes: Sequence[Sequence[ChunkFix]]) -> ContextManager[None]:
        """While active, the encoder's token embeddings carry `fixes` (one list per batch row; positions count
        the start token as 0). Must restore the encoder on exit."""


@dataclass(frozen=True)
class EncodeOptions:
    """The settings that change text embeddings (A1111 keys: CLIP_stop_at_last_layers, emphasis,
    comma_padding_backtrack, sdxl_clip_l_skip)."""

    clip_skip: int = 1
    emphasis: str = "Original"
    comma_padding_backtrack: int = 20
    sdxl_clip_l_skip: bool = False


@dataclass(frozen=True, eq=False)
class EncodedText:
    """One text's embeddings: `states` (77 * chunks, features) and, for SDXL-family models, `pooled` (features).

    Compared by identity: the loop uses that to notice when a prompt schedule switches texts."""

    states: torch.Tensor
    pooled: torch.Tensor | None = None


def _mean(z: torch.Tensor, counts: torch.Tensor | None) -> torch.Tensor:
    """Mean of z over a batch in which row i stands for `counts[i]` identical rows."""
    if counts is None:
        return z.mean()
    weights = counts.to(z.dtype).reshape(-1, 1, 1)
    return (z * weights).sum() / (weights.sum() * z.shape[1] * z.shape[2])


def apply_emphasis(z: torch.Tensor, multipliers: torch.Tensor, mode: str,
                   counts: torch.Tensor | None = None) -> torch.Tensor:
    """Step 3: weight each position's hidden state (z: (B, 77, C), multipliers: (B, 77)).

    `counts` (B,) gives each row's multiplicity in A1111's batch (a text repeated by an alternation is encoded
    once here but counts as often as it appears in the normalising mean); None means once each."""
    if mode in ("None", "Ignore") or bool((multipliers == 1.0).all()):
        return z
    original_mean = _mean(z, counts)
    z = z * multipliers.reshape(multipliers.shape + (1,)).expand(z.shape)
    if mode == "No norm":
        return z
    return z * (original_mean / _mean(z, counts))


class PromptEncoder:
    """Encodes groups of texts with the text encoders of one `ComponentSet`; caches results by group."""

    def __init__(self, components: ComponentSet, options: EncodeOptions,
                 embeddings: Sequence[TextualInversion | None] | None = None) -> None:
        count = len(components.text_encoders)
        if embeddings is not None and len(embeddings) != count:
            raise ValueError(f"{len(embeddings)} textual-inversion lookups for {count} text encoders")
        if options.emphasis not in EMPHASIS_MODES:
            log.warning("unknown emphasis mode %r: using Original (as A1111 does)", options.emphasis)
            options = EncodeOptions(options.clip_skip, "Original", options.comma_padding_backtrack,
                                    options.sdxl_clip_l_skip)
        self.components = components
        self.options = options
        self._embeddings: tuple[TextualInversion | None, ...] = tuple(embeddings or (None,) * count)
        self._specs = tuple(ChunkSpec.for_tokenizer(tok, options.comma_padding_backtrack)
                            for tok in components.tokenizers)
        self._cache: dict[tuple[tuple[str, ...], bool], tuple[EncodedText, ...]] = {}
        self.used_embeddings: dict[int, object] = {}
        """Embedding objects that reached the encoder (by id), for the infotext's "TI hashes"."""
        self._check_clip_skip()

    def _check_clip_skip(self) -> None:
        identity = self.components.identity
        if identity.is_sdxl and not (self.options.sdxl_clip_l_skip and identity.family is Family.SDXL):
            return
        layers = self.components.text_encoders[0].config.num_hidden_layers
        if self.options.clip_skip > layers:
            raise InvalidRequest(
                f"clip_skip must be at most {layers} for this model's text encoder, got {self.options.clip_skip}")

    def encode(self, texts: Sequence[str], negative: bool = False) -> tuple[EncodedText, ...]:
        """Embeddings of one group of texts (see the module docstring), one per text, in order."""
        key = (tuple(texts), negative)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._encode_group(list(texts), negative)
            self._cache[key] = cached
        return cached

    def _encode_group(self, group: list[str], negative: bool) -> tuple[EncodedText, ...]:
        texts = list(dict.fromkeys(group))  # each distinct text once; `counts` keeps A1111's mean over the group
        counts = None
        if len(texts) < len(group):
            counts = torch.tensor([group.count(text) for text in texts])
        states, pooled = [], None
        for index in range(len(self.components.text_encoders)):
            z, pool = self._encode_with(index, texts, counts)
            states.append(z)
            pooled = pool if pool is not None else pooled
        lengths = {z.shape[1] for z in states}
        if len(lengths) > 1:
            raise InvalidRequest("the prompt has a different number of 75-token chunks for each text encoder "
                                 "(a textual-inversion embedding with different vector counts per encoder?)")
        z = states[0] if len(states) == 1 else torch.cat(states, dim=-1)
        if negative and self.components.identity.is_sdxl and all(text == "" for text in texts):
            z = torch.zeros_like(z)
            pooled = None if pooled is None else torch.zeros_like(pooled)
        encoded = {text: EncodedText(z[row], None if pooled is None else pooled[row])
                   for row, text in enumerate(texts)}
        return tuple(encoded[text] for text in group)

    def _encode_with(self, index: int, texts: list[str],
                     counts: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Steps 1-3 for text encoder `index`: (B, 77 * chunks, C) and the first chunk's pooled output."""
        spec, lookup = self._specs[index], self._embeddings[index]
        tokenizer = self.components.tokenizers[index]
        lines = [tokenize_text(tokenizer, text, emphasis=self.options.emphasis, embeddings=lookup, spec=spec)
                 for text in texts]
        zs: list[torch.Tensor] = []
        pooled = None
        for position in range(max(len(line.chunks) for line in lines)):
            batch = [line.chunks[position] if position < len(line.chunks) else spec.empty_chunk() for line in lines]
            z, pool = self._encode_chunks(index, batch)
            multipliers = torch.tensor([chunk.multipliers for chunk in batch], device=z.device, dtype=z.dtype)
            zs.append(apply_emphasis(z, multipliers, self.options.emphasis, counts))
            pooled = pool if position == 0 else pooled
        return (zs[0] if len(zs) == 1 else torch.cat(zs, dim=1)), pooled

    def _encode_chunks(self, index: int, batch: list[PromptChunk]) -> tuple[torch.Tensor, torch.Tensor | None]:
        encoder, spec = self.components.text_encoders[index], self._specs[index]
        ids = torch.tensor([padded_ids(chunk, spec) for chunk in batch], device=execution_device(encoder))
        fixes = [chunk.fixes for chunk in batch]
        lookup = self._embeddings[index]
        applied = contextlib.nullcontext() if lookup is None or not any(fixes) else lookup.apply(encoder, fixes)
        for row in fixes:
            self.used_embeddings.update((id(fix.source), fix.source) for fix in row)
        with applied:
            return self._forward(index, encoder, ids)

    def _forward(self, index: int, encoder: PreTrainedModel,
                 ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Step 4: the hidden states the model is conditioned on, and the pooled output where there is one."""
        identity, clip_skip = self.components.identity, self.options.clip_skip
        if not identity.is_sdxl:
            if clip_skip <= 1:
                return encoder(ids)[0], None
            hidden = encoder(ids, output_hidden_states=True).hidden_states[-clip_skip]
            return encoder.get_submodule("final_layer_norm")(hidden), None  # transformers 5: no `text_model` wrapper
        output = encoder(ids, output_hidden_states=True)
        is_clip_l = identity.family is Family.SDXL and index == 0
        layer = -clip_skip if is_clip_l and self.options.sdxl_clip_l_skip else -2
        pooled = output.text_embeds if index == len(self.components.text_encoders) - 1 else None
        return output.hidden_states[layer], pooled
