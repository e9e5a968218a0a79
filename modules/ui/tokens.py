"""The prompt token counter shown in the corner of each prompt box ("12/75", A1111 style).

It counts what the text encoder will see, as A1111 does: extra-network tags removed, the prompt split on `AND` and
expanded into its step schedule, attention syntax resolved, each scheduled text cut into 75-token chunks (`BREAK`
and the comma word-wrap count as the padding they add). The count is the largest over the scheduled texts; the
limit is that count rounded up to a multiple of 75. The chunking is the encoder's (`modules.prompts.chunks`), so
counter and generation never disagree. The tokenizer is the bundled CLIP ViT-L/14 one, whose vocabulary SD1, SD2
and SDXL share; the `TokenCounter` object the UI owns loads it lazily, once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

from modules.paths import tokenizer_dir
from modules.prompts.chunks import (
    CHUNK_LENGTH,
    ChunkSpec,
    ChunkTokenizer,
    EmbeddingLookup,
    TokenPiece,
    chunk_limit,
    chunk_tokens,
    count_tokens,
)
from modules.prompts.parser import ScheduleParser, build_conditioning, extract_extra_networks

log = logging.getLogger(__name__)

__all__ = ["CHUNK_LENGTH", "TokenCount", "TokenCounter", "Tokenizer", "count_chunked", "load_bundled_tokenizer"]

Tokenizer = ChunkTokenizer
"""What the counter needs from a tokenizer (a transformers CLIP tokenizer)."""


def load_bundled_tokenizer() -> Tokenizer:
    """The bundled CLIP-L tokenizer (offline: local files only)."""
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir("clip_l")), local_files_only=True)
    # Counting never truncates: a limit above any prompt length keeps transformers from warning about long ones.
    tokenizer.model_max_length = 1_000_000
    return tokenizer


@dataclass(frozen=True)
class TokenCount:
    """Tokens the longest scheduled text uses, and the chunk-rounded limit shown after the slash."""

    count: int
    limit: int

    @property
    def label(self) -> str:
        return f"{self.count}/{self.limit}"


def count_chunked(token_ids: Sequence[Sequence[int]], break_flags: Sequence[bool], comma_id: int | None,
                  backtrack: int) -> int:
    """A1111's token count of one text, given the ids of each attention piece (`break_flags` marks BREAK pieces).

    A chunk that is closed early (BREAK, or a comma word-wrap that moves the tail to the next chunk) counts as
    full; the last chunk counts its real length.
    """
    pieces = [TokenPiece(ids, 1.0, is_break) for ids, is_break in zip(token_ids, break_flags, strict=True)]
    return chunk_tokens(pieces, ChunkSpec(bos_id=-1, eos_id=-2, pad_id=-2, comma_id=comma_id,
                                          backtrack=backtrack)).token_count


class TokenCounter:
    """Counts prompt tokens the way A1111's counter does; thread-safe, tokenizer loaded on first use."""

    def __init__(self, load_tokenizer: Callable[[], Tokenizer] = load_bundled_tokenizer, backtrack: int = 20,
                 embeddings: Callable[[Tokenizer], EmbeddingLookup | None] | None = None) -> None:
        """`embeddings` gives the textual-inversion lookup for the tokenizer: an embedding's name then counts as
        its vectors, as in A1111 (`ExtraNetworks.counting_lookup`)."""
        self._load_tokenizer = load_tokenizer
        self._embeddings = embeddings
        self._tokenizer: Tokenizer | None = None
        self._lock = threading.Lock()
        self._parser: ScheduleParser | None = None
        self.backtrack = backtrack

    def _ready(self) -> tuple[Tokenizer, ScheduleParser]:
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = self._load_tokenizer()
                self._parser = ScheduleParser()
            assert self._parser is not None
            return self._tokenizer, self._parser

    def count_text(self, text: str) -> int:
        """Token count of one already-scheduled text (attention syntax and BREAK still in it)."""
        tokenizer, _ = self._ready()
        lookup = self._embeddings(tokenizer) if self._embeddings is not None else None
        return count_tokens(tokenizer, text, backtrack=self.backtrack, embeddings=lookup)[0]

    def count(self, prompt: str, steps: int = 20, composable: bool = True) -> TokenCount:
        """Count for a whole prompt (negative prompts: `composable=False`, as `AND` stays text there)."""
        _, parser = self._ready()
        text, _ = extract_extra_networks(prompt or "")
        plan = build_conditioning([text], max(int(steps), 1), composable=composable, parser=parser)
        count = max((self.count_text(scheduled) for scheduled in plan.texts()), default=0)
        return TokenCount(count=count, limit=chunk_limit(count))

    def label(self, prompt: str, steps: int = 20, composable: bool = True) -> str:
        """The counter text; never raises (a broken tokenizer must not break typing)."""
        try:
            return self.count(prompt, steps, composable).label
        except Exception:  # noqa: BLE001 - the counter is cosmetic; log and show a neutral value
            log.exception("Token counting failed")
            return f"?/{CHUNK_LENGTH}"
