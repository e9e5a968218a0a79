"""The prompt token counter shown in the corner of each prompt box ("12/75", A1111 style).

A1111 counts what the text encoder will actually see: extra-network tags (`<lora:...>`) are removed, the prompt
is split on `AND` and expanded into its step schedule (prompt editing), attention syntax is resolved, and every
scheduled text is tokenized into 75-token chunks. `BREAK` and the comma word-wrap (`comma_padding_backtrack`) pad
a chunk to its end, so they count as the padding they add. The shown count is the largest over the scheduled
texts, and the limit is that count rounded up to the next multiple of 75.

The tokenizer is the bundled CLIP ViT-L/14 tokenizer (`models/configs/tokenizers/clip_l`). SD1, SD2 and SDXL all
use this BPE vocabulary, so the count is right for every supported family without loading a model. It is loaded
lazily, once, by the `TokenCounter` object the UI owns (no module-level state).
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from modules.paths import tokenizer_dir
from modules.prompts.parser import BREAK_WEIGHT, ScheduleParser, build_conditioning, extract_extra_networks, \
    parse_attention

log = logging.getLogger(__name__)

CHUNK_LENGTH = 75
"""Tokens per CLIP chunk (77 minus the start and end tokens)."""


class Tokenizer(Protocol):
    """What the counter needs from a tokenizer: token ids for a batch of texts, and the vocabulary."""

    def __call__(self, texts: list[str], *, add_special_tokens: bool, truncation: bool) -> dict: ...

    def get_vocab(self) -> dict[str, int]: ...


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
    count = 0
    chunk: list[int] = []
    last_comma = -1
    for ids, is_break in zip(token_ids, break_flags, strict=True):
        if is_break:
            count += CHUNK_LENGTH
            chunk, last_comma = [], -1
            continue
        for token in ids:
            if token == comma_id:
                last_comma = len(chunk)
            elif len(chunk) == CHUNK_LENGTH and last_comma != -1 and len(chunk) - last_comma <= backtrack:
                moved = chunk[last_comma + 1:]
                count += CHUNK_LENGTH
                chunk, last_comma = moved, -1
            if len(chunk) == CHUNK_LENGTH:
                count += CHUNK_LENGTH
                chunk, last_comma = [], -1
            chunk.append(token)
    return count + len(chunk)


class TokenCounter:
    """Counts prompt tokens the way A1111's counter does; thread-safe, tokenizer loaded on first use."""

    def __init__(self, load_tokenizer: Callable[[], Tokenizer] = load_bundled_tokenizer, backtrack: int = 20) -> None:
        self._load_tokenizer = load_tokenizer
        self._tokenizer: Tokenizer | None = None
        self._comma_id: int | None = None
        self._lock = threading.Lock()
        self._parser: ScheduleParser | None = None
        self.backtrack = backtrack

    def _ready(self) -> tuple[Tokenizer, ScheduleParser]:
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = self._load_tokenizer()
                self._comma_id = self._tokenizer.get_vocab().get(",</w>")
                self._parser = ScheduleParser()
            assert self._parser is not None
            return self._tokenizer, self._parser

    def count_text(self, text: str) -> int:
        """Token count of one already-scheduled text (attention syntax and BREAK still in it)."""
        tokenizer, _ = self._ready()
        pieces = parse_attention(text)
        texts = [piece for piece, _ in pieces]
        ids = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"] if texts else []
        flags = [weight == BREAK_WEIGHT and piece == "BREAK" for piece, weight in pieces]
        return count_chunked(ids, flags, self._comma_id, self.backtrack)

    def count(self, prompt: str, steps: int = 20, composable: bool = True) -> TokenCount:
        """Count for a whole prompt (negative prompts: `composable=False`, as `AND` stays text there)."""
        _, parser = self._ready()
        text, _ = extract_extra_networks(prompt or "")
        plan = build_conditioning([text], max(int(steps), 1), composable=composable, parser=parser)
        count = max((self.count_text(scheduled) for scheduled in plan.texts()), default=0)
        return TokenCount(count=count, limit=math.ceil(max(count, 1) / CHUNK_LENGTH) * CHUNK_LENGTH)

    def label(self, prompt: str, steps: int = 20, composable: bool = True) -> str:
        """The counter text; never raises (a broken tokenizer must not break typing)."""
        try:
            return self.count(prompt, steps, composable).label
        except Exception:  # noqa: BLE001 - the counter is cosmetic; log and show a neutral value
            log.exception("Token counting failed")
            return f"?/{CHUNK_LENGTH}"
