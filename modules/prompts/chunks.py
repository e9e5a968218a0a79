"""Token chunks of a prompt: A1111's `FrozenCLIPEmbedderWithCustomWords.tokenize_line`, as pure functions.

A CLIP text encoder sees 77 positions: start token, 75 prompt tokens, end token. A longer prompt is cut into chunks,
each encoded on its own (`modules.prompts.encode`) and concatenated. The distribution over chunks is A1111's:
1. the text is split into attention pieces (`parse_attention`; emphasis "None": one piece of weight 1), each
   tokenized on its own, every token carrying its piece's weight;
2. tokens fill the current chunk; `BREAK` closes it at once;
3. comma word-wrap (`comma_padding_backtrack`): when a chunk is full, the tokens after its last comma (if at most
   `backtrack` tokens from the end) move to the next chunk;
4. a textual-inversion name becomes one placeholder per vector (`EmbeddingLookup`), never split over two chunks;
5. each chunk is padded to 75 with the end token and framed. The token count is 75 per closed chunk plus the
   length of the last one.
At encode time the ids after a chunk's first end token become the tokenizer's pad id (`padded_ids`), so a prompt
of at most 75 tokens gives exactly the ids of diffusers' `encode_prompt`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from modules.errors import InvalidRequest
from modules.prompts.parser import BREAK_TEXT, BREAK_WEIGHT, parse_attention

CHUNK_LENGTH = 75
"""Prompt tokens per chunk (77 positions minus the start and end tokens)."""

PLACEHOLDER_ID = 0
"""Token id under an embedding's vectors (A1111 fills these slots with 0 before replacing their embeddings)."""

EMPHASIS_MODES = ("None", "Ignore", "Original", "No norm")
"""A1111's `emphasis` option values. "None" does not parse `(word:1.2)` at all; "Ignore" parses and drops weights."""


class ChunkTokenizer(Protocol):
    """What chunking needs from a (transformers CLIP) tokenizer."""

    bos_token_id: int | None
    eos_token_id: int | None
    pad_token_id: int | None

    def __call__(self, text: str | list[str], *, add_special_tokens: bool, truncation: bool) -> Mapping[str, Any]: ...

    unk_token_id: int | None

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]: ...


@dataclass(frozen=True)
class EmbeddingHit:
    """A textual-inversion embedding found in a prompt: how many name tokens it replaces and its vectors
    (n, hidden) for this text encoder. `source` is the embedding object, reported back for "TI hashes"."""

    name_tokens: int
    vectors: Any
    source: object

    @property
    def n_vectors(self) -> int:
        return int(self.vectors.shape[0])


class EmbeddingLookup(Protocol):
    """Seam for textual inversion (implemented by `modules.networks`): one lookup per text encoder."""

    def find(self, token_ids: Sequence[int], offset: int) -> EmbeddingHit | None:
        """The embedding whose name's tokens start at `token_ids[offset]`, else None (longest name first)."""


@dataclass(frozen=True)
class ChunkFix:
    """Embedding vectors that replace the token embeddings at `position` (BOS = 0) and the positions after it."""

    position: int
    vectors: Any
    source: object


@dataclass(frozen=True)
class PromptChunk:
    """One 77-token window: ids (start, 75 tokens, end; end tokens as padding), one weight per id, and fixes."""

    tokens: tuple[int, ...]
    multipliers: tuple[float, ...]
    fixes: tuple[ChunkFix, ...] = ()


@dataclass(frozen=True)
class TokenizedText:
    """The chunks of one text and its token count (A1111's count: closed chunks count 75)."""

    chunks: tuple[PromptChunk, ...]
    token_count: int


COMMA_TOKEN = ",</w>"
"""CLIP's comma token, where A1111 wraps long prompts."""


@dataclass(frozen=True)
class ChunkSpec:
    """Token ids and the word-wrap setting that chunking needs."""

    bos_id: int
    eos_id: int
    pad_id: int
    comma_id: int | None
    backtrack: int = 20

    @classmethod
    def for_tokenizer(cls, tokenizer: ChunkTokenizer, backtrack: int = 20) -> "ChunkSpec":
        eos = tokenizer.eos_token_id
        if tokenizer.bos_token_id is None or eos is None:
            raise InvalidRequest("the model's tokenizer has no start/end tokens; it is not a CLIP tokenizer")
        pad = eos if tokenizer.pad_token_id is None else tokenizer.pad_token_id
        comma = tokenizer.convert_tokens_to_ids(COMMA_TOKEN)  # (get_vocab would copy the whole vocabulary, ~40 ms)
        found = comma if isinstance(comma, int) and comma != tokenizer.unk_token_id else None
        return cls(tokenizer.bos_token_id, eos, pad, found, int(backtrack))

    def empty_chunk(self) -> PromptChunk:
        """The chunk of an empty text (also the filler when texts of a batch have fewer chunks than others)."""
        return PromptChunk((self.bos_id,) + (self.eos_id,) * (CHUNK_LENGTH + 1), (1.0,) * (CHUNK_LENGTH + 2))


@dataclass(frozen=True)
class TokenPiece:
    """Token ids of one attention piece, its weight, and whether it is a BREAK."""

    ids: Sequence[int]
    weight: float = 1.0
    is_break: bool = False


@dataclass
class _ChunkBuilder:
    """Mutable state of `chunk_tokens` (A1111's `next_chunk` closure)."""

    spec: ChunkSpec
    chunks: list[PromptChunk] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)
    fixes: list[ChunkFix] = field(default_factory=list)
    last_comma: int = -1
    token_count: int = 0

    def close(self, is_last: bool = False) -> None:
        """Pad the current chunk to 75 tokens, frame it with start/end tokens and start an empty one."""
        self.token_count += len(self.tokens) if is_last else CHUNK_LENGTH
        padding = CHUNK_LENGTH - len(self.tokens)
        tokens = [self.spec.bos_id, *self.tokens, *[self.spec.eos_id] * padding, self.spec.eos_id]
        multipliers = [1.0, *self.multipliers, *[1.0] * padding, 1.0]
        fixes = tuple(ChunkFix(fix.position + 1, fix.vectors, fix.source) for fix in self.fixes)
        self.chunks.append(PromptChunk(tuple(tokens), tuple(multipliers), fixes))
        self.tokens, self.multipliers, self.fixes, self.last_comma = [], [], [], -1

    def before_token(self, token: int) -> None:
        """Comma bookkeeping, the comma word-wrap, and closing a full chunk, before `token` is added."""
        full = len(self.tokens) == CHUNK_LENGTH
        if token == self.spec.comma_id:
            self.last_comma = len(self.tokens)
        elif (self.spec.backtrack != 0 and full and self.last_comma != -1
              and len(self.tokens) - self.last_comma <= self.spec.backtrack):
            self._wrap_after(self.last_comma + 1)
        if len(self.tokens) == CHUNK_LENGTH:
            self.close()

    def _wrap_after(self, split: int) -> None:
        """Close the chunk at `split` and carry the tokens after it (and their embedding fixes) to a new one."""
        moved = (self.tokens[split:], self.multipliers[split:])
        moved_fixes = [ChunkFix(f.position - split, f.vectors, f.source) for f in self.fixes if f.position >= split]
        self.tokens, self.multipliers = self.tokens[:split], self.multipliers[:split]
        self.fixes = [fix for fix in self.fixes if fix.position < split]
        self.close()
        self.tokens, self.multipliers = list(moved[0]), list(moved[1])
        self.fixes = moved_fixes

    def add_embedding(self, hit: EmbeddingHit, weight: float) -> None:
        count = hit.n_vectors
        if count > CHUNK_LENGTH:
            raise InvalidRequest(f"the embedding in the prompt has {count} vectors; at most {CHUNK_LENGTH} fit")
        if len(self.tokens) + count > CHUNK_LENGTH:
            self.close()
        self.fixes.append(ChunkFix(len(self.tokens), hit.vectors, hit.source))
        self.tokens += [PLACEHOLDER_ID] * count
        self.multipliers += [weight] * count


def chunk_tokens(pieces: Sequence[TokenPiece], spec: ChunkSpec,
                 embeddings: EmbeddingLookup | None = None) -> TokenizedText:
    """Distribute the tokens of attention pieces over 77-token chunks (steps 2-5 of the module docstring)."""
    builder = _ChunkBuilder(spec)
    for piece in pieces:
        if piece.is_break:
            builder.close()
            continue
        position = 0
        while position < len(piece.ids):
            token = int(piece.ids[position])
            builder.before_token(token)
            hit = embeddings.find(piece.ids, position) if embeddings is not None else None
            if hit is None:
                builder.tokens.append(token)
                builder.multipliers.append(piece.weight)
                position += 1
            else:
                builder.add_embedding(hit, piece.weight)
                position += hit.name_tokens
    if builder.tokens or not builder.chunks:
        builder.close(is_last=True)
    return TokenizedText(tuple(builder.chunks), builder.token_count)


def attention_pieces(text: str, emphasis: str = "Original") -> list[tuple[str, float]]:
    """Step 1: `(text, weight)` pieces; emphasis "None" keeps the text whole and literal (A1111)."""
    return [(text, 1.0)] if emphasis == "None" else parse_attention(text)


def tokenize_text(tokenizer: ChunkTokenizer, text: str, *, emphasis: str = "Original", backtrack: int = 20,
                  embeddings: EmbeddingLookup | None = None, spec: ChunkSpec | None = None) -> TokenizedText:
    """The chunks of one already scheduled text (no `[a:b:when]` left; attention syntax and BREAK still in it)."""
    spec = spec or ChunkSpec.for_tokenizer(tokenizer, backtrack)
    parsed = attention_pieces(text, emphasis)
    ids = tokenizer([piece for piece, _ in parsed], add_special_tokens=False, truncation=False)["input_ids"]
    pieces = [TokenPiece(piece_ids, weight, piece == BREAK_TEXT and weight == BREAK_WEIGHT)
              for piece_ids, (piece, weight) in zip(ids, parsed, strict=True)]
    return chunk_tokens(pieces, spec, embeddings)


def chunk_limit(token_count: int) -> int:
    """The limit shown after the slash: the count rounded up to whole chunks (at least one)."""
    return math.ceil(max(token_count, 1) / CHUNK_LENGTH) * CHUNK_LENGTH


def count_tokens(tokenizer: ChunkTokenizer, text: str, *, emphasis: str = "Original", backtrack: int = 20,
                 embeddings: EmbeddingLookup | None = None) -> tuple[int, int]:
    """(tokens, limit) of one scheduled text, as A1111's token counter shows them ("12/75")."""
    count = tokenize_text(tokenizer, text, emphasis=emphasis, backtrack=backtrack, embeddings=embeddings).token_count
    return count, chunk_limit(count)


def padded_ids(chunk: PromptChunk, spec: ChunkSpec) -> list[int]:
    """The ids the encoder gets: after the chunk's first end token, the pad id (A1111 `process_tokens`)."""
    tokens = list(chunk.tokens)
    if spec.pad_id != spec.eos_id:
        first_end = tokens.index(spec.eos_id)
        tokens[first_end + 1:] = [spec.pad_id] * (len(tokens) - first_end - 1)
    return tokens
