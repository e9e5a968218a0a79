"""`CombinedResult` (extension API 1.6): one `GenerationResult` assembled from the results of several generations.

Scripts that run several generations for one answer (X/Y/Z plot, Prompt matrix, Loopback, Outpainting mk2) return
their pictures with a grid in front, as A1111 does: every picture keeps its own seed, prompts and infotext, and a
grid takes those of the picture it stands for (or an infotext of its own). Re-exported by `modules.extensions.api`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from PIL import Image

from modules.types import GenerationRequest, GenerationResult


@dataclass(frozen=True)
class _Entry:
    image: Image.Image
    seed: int
    subseed: int
    prompt: str
    negative_prompt: str
    infotext: str


@dataclass
class CombinedResult:
    """Collects pictures with their labels, then `result()` makes the `GenerationResult` (comments de-duplicated, in
    the order they were first seen)."""

    _entries: list[_Entry] = field(default_factory=list)
    _comments: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, image: Image.Image, seed: int, subseed: int, prompt: str, negative_prompt: str,
            infotext: str) -> None:
        """One picture with its own labels."""
        self._entries.append(_Entry(image, seed, subseed, prompt, negative_prompt, infotext))

    def add_result(self, result: GenerationResult, *, first_only: bool = False) -> None:
        """Every picture of `result` (or only its first) with its labels, and its comments."""
        count = 1 if first_only else len(result.images)
        for index in range(min(count, len(result.images))):
            self.add(result.images[index], result.seeds[index], result.subseeds[index], result.prompts[index],
                     result.negative_prompts[index], result.infotexts[index])
        self.add_comments(result.comments)

    def add_comments(self, comments: Iterable[str]) -> None:
        self._comments.extend(comments)

    def put_first(self, images: Iterable[Image.Image], like: GenerationResult | int = 0,
                  infotext: str | None = None) -> None:
        """Grids in front, in the given order, labelled as the first picture of `like` (a result, or the index of a
        picture collected already), with `infotext` instead of its infotext when given."""
        if isinstance(like, GenerationResult):
            source = _Entry(like.images[0], like.seeds[0], like.subseeds[0], like.prompts[0],
                            like.negative_prompts[0], like.infotexts[0])
        else:
            source = self._entries[like]
        text = source.infotext if infotext is None else infotext
        grids = [_Entry(image, source.seed, source.subseed, source.prompt, source.negative_prompt, text)
                 for image in images]
        self._entries[:0] = grids

    def result(self, request: GenerationRequest, *, interrupted: bool = False) -> GenerationResult:
        entries = self._entries
        return GenerationResult(
            tuple(entry.image for entry in entries), tuple(entry.seed for entry in entries),
            tuple(entry.subseed for entry in entries), tuple(entry.prompt for entry in entries),
            tuple(entry.negative_prompt for entry in entries), tuple(entry.infotext for entry in entries),
            request, interrupted=interrupted, comments=tuple(dict.fromkeys(self._comments)))
