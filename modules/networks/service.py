"""The extra-networks service the App owns: both databases, and what one job needs from them.

`ExtraNetworks` holds the textual inversion (`models/embeddings`) and LoRA (`models/Lora`) databases and answers
the generation path, the API listings and the UI: `textual_inversion(components)` (one lookup per text encoder, or
None), `lora_uses(refs)` (`<lora:...>` references resolved; unknown names are left out with a warning),
`job_infotext(...)` ("Lora hashes", "TI hashes") and `counting_lookup(tokenizer)` for the token counter.
Folders are rescanned when their contents change (names, sizes, modification times), checked before each job and
each listing, so a file dropped in works without a restart; `refresh()` rescans unconditionally.
`substituted(loras, embeddings)` lends, for one job, files under other names: a Ray worker whose node has the
driver's LoRA or embedding under another file name (found by sha256) runs the job as the driver names them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ContextManager, Iterable, Iterator, Mapping, Sequence

from modules.networks.folders import (
    EMBEDDING_EXTENSIONS,
    LORA_EXTENSIONS,
    Signature,
    file_names,
    folder_signature,
)
from modules.prompts.chunks import ChunkFix, ChunkTokenizer, EmbeddingHit
from modules.prompts.parser import ExtraNetworkRef

if TYPE_CHECKING:  # the databases read tensors (torch): imported on first use, not at start-up
    from transformers import PreTrainedModel

    from modules.models.components import ComponentSet
    from modules.networks.embeddings import Embedding, EmbeddingDatabase, EmbeddingMatcher
    from modules.networks.lora import LoraDatabase, LoraFile, LoraUse

log = logging.getLogger(__name__)

LORA_KINDS = ("lora", "lyco")  # A1111's Lora extension also answers the old LyCORIS tag


@dataclass(frozen=True)
class EncoderEmbeddings:
    """Textual inversion for one text encoder: finds embedding names in token ids and applies their vectors.

    `key` picks the vector set (`embedding_keys`); None takes any (the UI's token counter, which only counts them).
    """

    matcher: EmbeddingMatcher
    key: str | None

    def find(self, token_ids: Sequence[int], offset: int) -> EmbeddingHit | None:
        found = self.matcher.match(token_ids, offset)
        if found is None:
            return None
        embedding, name_tokens = found
        vectors = embedding.vectors[self.key] if self.key is not None else next(iter(embedding.vectors.values()))
        return EmbeddingHit(name_tokens, vectors, embedding)

    def apply(self, encoder: PreTrainedModel, fixes: Sequence[Sequence[ChunkFix]]) -> ContextManager[None]:
        from modules.networks.embeddings import token_fixes

        # ChunkFix carries `position` and `vectors`, all `token_fixes` reads.
        return token_fixes(encoder, fixes)  # type: ignore[arg-type]


@dataclass
class ExtraNetworks:
    """The embedding and LoRA databases of one App over two folders; see the module doc. The databases are made
    on first use (their modules need torch)."""

    embeddings_dir: Path
    lora_dir: Path
    _signatures: dict[str, Signature] = field(default_factory=dict, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _counting: tuple[object, object, EncoderEmbeddings] | None = field(default=None, repr=False)
    _databases: tuple[EmbeddingDatabase, LoraDatabase] | None = field(default=None, repr=False)
    _substitutes: tuple[dict[str, LoraFile], dict[str, Embedding]] = field(default_factory=lambda: ({}, {}),
                                                                           repr=False)

    @classmethod
    def for_folders(cls, embeddings_dir: str | os.PathLike[str], lora_dir: str | os.PathLike[str]) -> "ExtraNetworks":
        """Databases for two folders, not scanned yet (the first use scans them)."""
        return cls(Path(embeddings_dir), Path(lora_dir))

    def _made(self) -> tuple[EmbeddingDatabase, LoraDatabase]:
        with self._lock:
            if self._databases is None:
                from modules.networks.embeddings import EmbeddingDatabase
                from modules.networks.lora import LoraDatabase

                self._databases = (EmbeddingDatabase(self.embeddings_dir), LoraDatabase(self.lora_dir))
            return self._databases

    @property
    def embeddings(self) -> EmbeddingDatabase:
        """Textual inversion embeddings (`models/embeddings`)."""
        return self._made()[0]

    @property
    def loras(self) -> LoraDatabase:
        """LoRA files (`models/Lora`)."""
        return self._made()[1]

    def names(self) -> tuple[list[str], list[str]]:
        """(embedding names, LoRA names) for the pickers: the databases' lists once they are made, before that the
        file names in the folders (no file is opened, so start-up does not load torch)."""
        if self._databases is None:
            return (file_names(self.embeddings_dir, EMBEDDING_EXTENSIONS), file_names(self.lora_dir, LORA_EXTENSIONS))
        self.refresh_embeddings()
        self.refresh_loras()
        return list(self.embeddings.embeddings), list(self.loras.files)

    def refresh(self) -> None:
        """Rescan both folders now."""
        with self._lock:
            self._refresh_embeddings(force=True)
            self._refresh_loras(force=True)

    def refresh_embeddings(self, force: bool = False) -> None:
        """Rescan `models/embeddings` (only when its files changed, unless `force`)."""
        with self._lock:
            self._refresh_embeddings(force)

    def refresh_loras(self, force: bool = False) -> None:
        """Rescan `models/Lora` (only when its files changed, unless `force`)."""
        with self._lock:
            self._refresh_loras(force)

    def _refresh_embeddings(self, force: bool) -> None:
        signature = folder_signature(self.embeddings_dir, EMBEDDING_EXTENSIONS)
        if force or self._signatures.get("embeddings") != signature:
            self.embeddings.refresh()
            self._signatures["embeddings"] = signature

    def _refresh_loras(self, force: bool) -> None:
        signature = folder_signature(self.lora_dir, LORA_EXTENSIONS)
        if force or self._signatures.get("loras") != signature:
            self.loras.refresh()
            self._signatures["loras"] = signature

    @contextlib.contextmanager
    def substituted(self, loras: Mapping[str, LoraFile], embeddings: Mapping[str, Embedding]) -> Iterator[None]:
        """While the block runs, `<lora:NAME>` finds `loras[NAME]` and the prompt's NAME the embedding
        `embeddings[NAME]`, before (and instead of) the folder's files of that name. For one job at a time: a Ray
        worker runs one job at once."""
        with self._lock:
            self._substitutes = (dict(loras), dict(embeddings))
        try:
            yield
        finally:
            with self._lock:
                self._substitutes = ({}, {})

    # -- textual inversion ---------------------------------------------------------------------------------------

    def textual_inversion(self, components: ComponentSet) -> tuple[EncoderEmbeddings, ...] | None:
        """One lookup per text encoder over the embeddings compatible with `components`; None when none are."""
        from modules.networks.embeddings import EmbeddingMatcher, embedding_keys

        compatible = self.embeddings.compatible(components)
        compatible.update((name, embedding) for name, embedding in self._substitutes[1].items()
                          if embedding.is_compatible(components))
        if not compatible:
            return None
        keys = embedding_keys(components.identity)
        return tuple(EncoderEmbeddings(EmbeddingMatcher(tokenizer, compatible), key)
                     for tokenizer, key in zip(components.tokenizers, keys, strict=True))

    def counting_lookup(self, tokenizer: ChunkTokenizer) -> EncoderEmbeddings | None:
        """For the UI token counter, which has no model: every embedding, each counting its vectors."""
        from modules.networks.embeddings import EmbeddingMatcher

        embeddings = self.embeddings.embeddings
        if not embeddings:
            return None
        cached = self._counting
        if cached is None or cached[0] is not embeddings or cached[1] is not tokenizer:
            cached = (embeddings, tokenizer, EncoderEmbeddings(EmbeddingMatcher(tokenizer, embeddings), None))
            self._counting = cached
        return cached[2]

    # -- LoRA ----------------------------------------------------------------------------------------------------

    def lora_uses(self, refs: Sequence[ExtraNetworkRef]) -> list[LoraUse]:
        """`<lora:...>` references -> LoraUse, in prompt order; unknown names are logged and left out (A1111)."""
        from modules.networks.lora import LoraUse, lora_multipliers

        for ref in refs:
            if ref.kind not in LORA_KINDS:
                log.warning("Skipping unknown extra network: <%s:%s>", ref.kind, ref.name)
        wanted = [ref for ref in refs if ref.kind in LORA_KINDS]
        if wanted:
            self.refresh_loras()
        uses, missing = [], []
        for ref in wanted:
            lora = self._substitutes[0].get(ref.name) or self.loras.find(ref.name)
            if lora is None:
                missing.append(ref.name)
                continue
            te, unet = lora_multipliers(ref.name, ref.args)
            uses.append(LoraUse(lora, te, unet, mentioned_name=ref.name))
        if missing:
            log.warning("Networks not found: %s (looked in %s)", ", ".join(missing), self.loras.folder)
        return uses


def job_infotext(uses: Sequence[LoraUse], used_embeddings: Iterable[object]) -> dict[str, str]:
    """A1111's "Lora hashes" and "TI hashes" infotext values of one job (keys only when non-empty)."""
    from modules.networks.embeddings import Embedding, ti_hashes_infotext
    from modules.networks.lora import lora_hashes_infotext

    values: dict[str, str] = {}
    if uses:  # A1111 adds it when the networks activate, before the prompts are encoded
        values["Lora hashes"] = lora_hashes_infotext(uses)
    embeddings = [item for item in used_embeddings if isinstance(item, Embedding)]
    if embeddings:
        values["TI hashes"] = ti_hashes_infotext(embeddings)
    return values
