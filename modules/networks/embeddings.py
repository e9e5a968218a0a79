"""Textual inversion embeddings: the `models/embeddings` database and putting their vectors into a prompt.

Files are read by `modules.models.state_dict` (pickles are never executed): {"string_to_param": {"*": [n, dim]}}
with name/step/checkpoint fields, diffusers concepts (one tensor under any key), or SDXL pairs {"clip_l": [n, 768],
"clip_g": [n, 1280]}. An embedding's name is its file stem. In a prompt, the name's tokens (longest match first)
are replaced by one placeholder token per vector (`expand_tokens`); while the encoder runs, a forward hook on its
token-embedding layer overwrites those rows with the vectors (`token_fixes`) and is always removed.
`embedding_keys(identity)` says which vector set goes to which encoder: "*" for SD1/SD2, "clip_l" and "clip_g" for
SDXL, "clip_g" for the refiner.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
from transformers import CLIPTokenizer, PreTrainedModel

from modules.errors import UserError
from modules.models.components import ComponentSet
from modules.models.hashes import calculate_sha256
from modules.models.identity import Family, ModelIdentity
from modules.models.state_dict import is_safetensors, read_pickle, read_state_dict
from modules.networks.folders import EMBEDDING_EXTENSIONS
from modules.prompts.chunks import ChunkTokenizer

log = logging.getLogger(__name__)

SINGLE_KEY = "*"
SDXL_KEYS = ("clip_l", "clip_g")
SHORTHASH_LENGTH = 12
PLACEHOLDER_TOKEN = 0  # A1111 fills an embedding's slots with token 0 before overwriting their embeddings


class EmbeddingFormatError(UserError):
    """A file in the embeddings folder that is not a textual inversion embedding."""


def embedding_keys(identity: ModelIdentity) -> tuple[str, ...]:
    """Vector-set key for each text encoder of the model, in ComponentSet order."""
    if identity.family is Family.SDXL:
        return SDXL_KEYS
    if identity.family is Family.SDXL_REFINER:
        return ("clip_g",)
    return (SINGLE_KEY,)


@dataclass
class Embedding:
    """One textual inversion embedding: vectors per key ("*" or "clip_l"/"clip_g"), each [n_vectors, dim]."""

    name: str
    path: Path
    vectors: dict[str, torch.Tensor]
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    _sha256: str | None = field(default=None, repr=False)

    @property
    def n_vectors(self) -> int:
        return next(iter(self.vectors.values())).shape[0]

    @property
    def shape(self) -> int:
        """A1111's `shape`: the vector width, summed over both encoders for SDXL pairs."""
        return sum(tensor.shape[-1] for tensor in self.vectors.values())

    @property
    def sha256(self) -> str:
        """sha256 of the file, computed once on first use (A1111 "textual_inversion/<name>" hash)."""
        if self._sha256 is None:
            self._sha256 = calculate_sha256(self.path)
        return self._sha256

    @property
    def shorthash(self) -> str:
        return self.sha256[:SHORTHASH_LENGTH]

    def is_compatible(self, components: ComponentSet) -> bool:
        """True when it has a vector set for every key of the model, as wide as that encoder's hidden size."""
        keys = embedding_keys(components.identity)
        for key, encoder in zip(keys, components.text_encoders, strict=True):
            tensor = self.vectors.get(key)
            if tensor is None or tensor.shape[-1] != encoder.config.hidden_size:
                return False
        return True

    def listing(self) -> dict[str, Any]:
        """One entry of A1111's /sdapi/v1/embeddings."""
        return {
            "step": self.step,
            "sd_checkpoint": self.sd_checkpoint,
            "sd_checkpoint_name": self.sd_checkpoint_name,
            "shape": self.shape,
            "vectors": self.n_vectors,
        }


# ---------------------------------------------------------------- reading files


def _read_file(path: Path) -> Mapping[str, Any]:
    """A safetensors file's tensors, or a pickle's whole dictionary (name, step, ... are not tensors)."""
    if is_safetensors(path):
        return read_state_dict(path)
    # The original textual inversion code saved `string_to_param` as an nn.ParameterDict (plain data once unpickled).
    data = read_pickle(path, allow=[torch.nn.ParameterDict])
    if not isinstance(data, dict):
        raise EmbeddingFormatError(f"{path}: holds a {type(data).__name__}, not an embedding dictionary.")
    return data


def _as_2d(tensor: torch.Tensor) -> torch.Tensor:
    """[n, dim] float32, copied out of the (memory-mapped) file, which may be rewritten while the app runs."""
    tensor = tensor.detach().to(torch.float32, copy=True)
    return tensor.unsqueeze(0) if tensor.ndim == 1 else tensor


def _vectors_from_data(data: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    if "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)
        values = list(params.values()) if isinstance(params, Mapping) else []
        if len(values) != 1 or not isinstance(values[0], torch.Tensor):
            raise EmbeddingFormatError(f"{path}: an embedding file must hold exactly one term in string_to_param.")
        return {SINGLE_KEY: _as_2d(values[0])}
    if isinstance(data.get("clip_l"), torch.Tensor) and isinstance(data.get("clip_g"), torch.Tensor):
        vectors = {key: _as_2d(data[key]) for key in SDXL_KEYS}
        if vectors["clip_l"].shape[0] != vectors["clip_g"].shape[0]:
            raise EmbeddingFormatError(f"{path}: clip_l and clip_g hold different numbers of vectors.")
        return vectors
    tensors = [value for value in data.values() if isinstance(value, torch.Tensor)]
    if len(data) == 1 and len(tensors) == 1:
        return {SINGLE_KEY: _as_2d(tensors[0])}
    raise EmbeddingFormatError(
        f"{path}: not a textual inversion embedding (expected string_to_param, clip_l/clip_g, or a single tensor)."
    )


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def load_embedding(path: Path) -> Embedding:
    """Read one embedding file (raises UserError subclasses for damaged, unsafe or foreign files)."""
    data = _read_file(path)
    vectors = _vectors_from_data(data, path)
    if any(tensor.ndim != 2 for tensor in vectors.values()):
        raise EmbeddingFormatError(f"{path}: embedding vectors must be [n_vectors, dim].")
    step = data.get("step")
    return Embedding(
        name=path.stem,
        path=path,
        vectors=vectors,
        step=int(step) if isinstance(step, (int, float)) else None,
        sd_checkpoint=_optional_str(data.get("sd_checkpoint")),
        sd_checkpoint_name=_optional_str(data.get("sd_checkpoint_name")),
    )


class EmbeddingDatabase:
    """Embeddings under one folder (recursive). `errors` maps unreadable files to the reason."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.embeddings: dict[str, Embedding] = {}
        self.errors: dict[str, str] = {}

    def refresh(self) -> None:
        """Rescan and reload every embedding file; unreadable ones are logged and listed in `errors`. Of two files
        with the same stem, the later one in a sorted walk wins."""
        embeddings: dict[str, Embedding] = {}
        errors: dict[str, str] = {}
        if self.folder.is_dir():
            for path in sorted(self.folder.rglob("*"), key=lambda p: str(p).lower()):
                if not path.is_file() or path.suffix.lower() not in EMBEDDING_EXTENSIONS or path.stat().st_size == 0:
                    continue
                try:
                    embedding = load_embedding(path)
                except UserError as exc:
                    log.warning("Skipping embedding: %s", exc)
                    errors[str(path)] = str(exc)
                    continue
                embeddings[embedding.name] = embedding
        self.embeddings = dict(sorted(embeddings.items(), key=lambda item: item[0].lower()))
        self.errors = errors
        log.info("Found %d textual inversion embeddings in %s", len(self.embeddings), self.folder)

    def compatible(self, components: ComponentSet) -> dict[str, Embedding]:
        """Embeddings usable with this model (A1111 "loaded")."""
        return {name: emb for name, emb in self.embeddings.items() if emb.is_compatible(components)}

    def listing(self, components: ComponentSet) -> dict[str, dict[str, dict[str, Any]]]:
        """A1111's /sdapi/v1/embeddings response: {"loaded": {...}, "skipped": {...}}."""
        loaded: dict[str, dict[str, Any]] = {}
        skipped: dict[str, dict[str, Any]] = {}
        for name, embedding in self.embeddings.items():
            (loaded if embedding.is_compatible(components) else skipped)[name] = embedding.listing()
        return {"loaded": loaded, "skipped": skipped}


# ---------------------------------------------------------------- prompts


@dataclass(frozen=True)
class TokenFix:
    """Vectors that replace the token embeddings at `position` .. `position + len(vectors) - 1`."""

    position: int
    vectors: torch.Tensor
    embedding: Embedding

    def shifted(self, offset: int) -> "TokenFix":
        """The same fix `offset` tokens later (e.g. +1 once the BOS token is prepended)."""
        return replace(self, position=self.position + offset)


class EmbeddingMatcher:
    """Finds embedding names in token ids (A1111 `find_embedding_at_position`), longest name first."""

    def __init__(self, tokenizer: ChunkTokenizer, embeddings: Mapping[str, Embedding]) -> None:
        self._by_first: dict[int, list[tuple[list[int], Embedding]]] = {}
        for name, embedding in embeddings.items():
            ids = tokenizer(name, add_special_tokens=False, truncation=False)["input_ids"]
            if ids:
                self._by_first.setdefault(ids[0], []).append((list(ids), embedding))
        for candidates in self._by_first.values():
            candidates.sort(key=lambda item: len(item[0]), reverse=True)

    def match(self, token_ids: Sequence[int], offset: int) -> tuple[Embedding, int] | None:
        """(embedding, number of name tokens) when an embedding's name starts at `offset`, else None."""
        for ids, embedding in self._by_first.get(token_ids[offset], ()):
            if list(token_ids[offset : offset + len(ids)]) == ids:
                return embedding, len(ids)
        return None


def expand_tokens(
    token_ids: Sequence[int],
    tokenizer: CLIPTokenizer | EmbeddingMatcher,
    embeddings: Mapping[str, Embedding],
    key: str = SINGLE_KEY,
) -> tuple[list[int], list[TokenFix]]:
    """Replace each embedding name in `token_ids` (no BOS/EOS) by one placeholder per vector.

    Returns the new ids and the fixes (positions into the returned list) carrying the vectors for `key` (see
    `embedding_keys`). Pass an `EmbeddingMatcher` instead of the tokenizer to reuse one across prompts; then
    `embeddings` is ignored.
    """
    matcher = tokenizer if isinstance(tokenizer, EmbeddingMatcher) else EmbeddingMatcher(tokenizer, embeddings)
    ids: list[int] = []
    fixes: list[TokenFix] = []
    offset = 0
    while offset < len(token_ids):
        found = matcher.match(token_ids, offset)
        if found is None:
            ids.append(int(token_ids[offset]))
            offset += 1
            continue
        embedding, n_name_tokens = found
        vectors = embedding.vectors[key]
        fixes.append(TokenFix(len(ids), vectors, embedding))
        ids.extend([PLACEHOLDER_TOKEN] * vectors.shape[0])
        offset += n_name_tokens
    return ids, fixes


def ti_hashes_infotext(embeddings: Sequence[Embedding]) -> str:
    """A1111's "TI hashes" value: "name: shorthash, ..." (':' and ',' removed from names), "" when none."""
    parts = {emb.name.replace(":", "").replace(",", ""): emb.shorthash for emb in embeddings}
    return ", ".join(f"{name}: {shorthash}" for name, shorthash in parts.items())


def _substitute(token_embeds: torch.Tensor, fixes: Sequence[Sequence[TokenFix]]) -> torch.Tensor:
    if len(fixes) != token_embeds.shape[0]:
        raise ValueError(f"{len(fixes)} rows of token fixes for a batch of {token_embeds.shape[0]}")
    if not any(fixes):
        return token_embeds
    out = token_embeds.clone()
    length = out.shape[1]
    for row, row_fixes in enumerate(fixes):
        for fix in row_fixes:
            count = min(fix.vectors.shape[0], length - fix.position)
            if count > 0:
                out[row, fix.position : fix.position + count] = fix.vectors[:count].to(out.device, out.dtype)
    return out


def embed_tokens(
    text_encoder: PreTrainedModel, input_ids: torch.Tensor, fixes: Sequence[Sequence[TokenFix]]
) -> torch.Tensor:
    """Token embeddings [B, T, D] of `input_ids` with each row's fixes substituted (positions into `input_ids`)."""
    layer = text_encoder.get_input_embeddings()
    with torch.no_grad():
        return _substitute(layer(input_ids.to(next(layer.parameters()).device)), fixes)


@contextlib.contextmanager
def token_fixes(text_encoder: PreTrainedModel, fixes: Sequence[Sequence[TokenFix]]) -> Iterator[None]:
    """While active, the encoder's token embeddings carry `fixes` (one list per batch row, positions into the
    input ids the encoder is called with, BOS included). The hook is removed on exit, whatever happens.

    transformers 5's CLIPTextModel takes no `inputs_embeds`, so the rows are substituted at the layer's output."""
    layer = text_encoder.get_input_embeddings()

    def hook(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return _substitute(output, fixes)

    handle = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
