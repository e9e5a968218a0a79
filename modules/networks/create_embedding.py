"""A1111's "Create embedding" (`POST /sdapi/v1/create/embedding`): a new, untrained textual inversion file.

`num_vectors_per_token` vectors per text encoder of the current checkpoint: zeros, or with `init_text` the token
embeddings of that text spread over the vectors as A1111 does (vector i = token i * n_tokens // n_vectors). SD 1.x
and 2.x files are A1111's `.pt` layout ({"string_to_param": {"*": ...}, "name", "step", "sd_checkpoint", ...});
SDXL files are `.safetensors` with `clip_l` and `clip_g` (the layout SDXL embeddings are shared in). The name keeps
A1111's allowed characters (letters, digits, `._- `); an existing file is replaced only with `overwrite_old`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from modules.errors import InvalidRequest
from modules.models.components import ComponentSet
from modules.models.identity import Family
from modules.networks.embeddings import SINGLE_KEY, embedding_keys


def clean_name(name: str) -> str:
    """`name` with only A1111's allowed characters; InvalidRequest when nothing is left."""
    cleaned = "".join(char for char in name if char.isalnum() or char in "._- ").strip()
    if not cleaned:
        raise InvalidRequest(f"Embedding name {name!r} has no usable characters (letters, digits, '._- ').")
    return cleaned


def initial_vectors(components: ComponentSet, init_text: str, count: int) -> dict[str, torch.Tensor]:
    """[count, width] vectors per text encoder key (see the module doc)."""
    vectors: dict[str, torch.Tensor] = {}
    for key, encoder, tokenizer in zip(embedding_keys(components.identity), components.text_encoders,
                                       components.tokenizers):
        table: torch.Tensor = encoder.get_input_embeddings().weight  # type: ignore[assignment]
        vectors[key] = torch.zeros((count, table.shape[1]), dtype=torch.float32)
        ids = tokenizer(init_text, add_special_tokens=False).input_ids[:count] if init_text else []
        if ids:
            embedded = table[torch.tensor(ids, device=table.device)].detach().float().cpu()
            for index in range(count):
                vectors[key][index] = embedded[index * len(ids) // count]
    return vectors


def create_embedding(folder: Path, name: str, components: ComponentSet, checkpoint_hash: str | None,
                     checkpoint_name: str, num_vectors_per_token: int = 1, overwrite_old: bool = False,
                     init_text: str = "*") -> Path:
    """Write the new embedding under `folder` and return its path (see the module doc)."""
    if not 1 <= num_vectors_per_token <= 75:
        raise InvalidRequest(f"num_vectors_per_token must be 1-75 (one 75-token chunk), not {num_vectors_per_token}.")
    name = clean_name(name)
    sdxl = components.identity.family in (Family.SDXL, Family.SDXL_REFINER)
    path = folder / f"{name}{'.safetensors' if sdxl else '.pt'}"
    if path.exists() and not overwrite_old:
        raise InvalidRequest(f"Embedding file {path} already exists; set overwrite_old to replace it.")
    vectors = initial_vectors(components, init_text, num_vectors_per_token)
    folder.mkdir(parents=True, exist_ok=True)
    if sdxl:
        save_file({key: value.contiguous() for key, value in vectors.items()}, str(path))
        return path
    torch.save({"string_to_token": {SINGLE_KEY: 265}, "string_to_param": {SINGLE_KEY: vectors[SINGLE_KEY]},
                "name": name, "step": 0, "sd_checkpoint": checkpoint_hash, "sd_checkpoint_name": checkpoint_name},
               path)
    return path
