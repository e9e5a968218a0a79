"""Textual inversion: reading every file format, compatibility, token expansion and the effect on conditioning."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.models.components import ComponentSet
from modules.models.identity import Family, ModelIdentity
from modules.models.tiny import TINY_HIDDEN, build_tiny_components
from modules.networks.embeddings import (
    PLACEHOLDER_TOKEN,
    EmbeddingDatabase,
    EmbeddingMatcher,
    embed_tokens,
    embedding_keys,
    expand_tokens,
    ti_hashes_infotext,
    token_fixes,
)

BOS, EOS = 49406, 49407


@pytest.fixture(scope="module")
def sd1() -> ComponentSet:
    return build_tiny_components(ModelIdentity(Family.SD1))


@pytest.fixture(scope="module")
def sdxl() -> ComponentSet:
    return build_tiny_components(ModelIdentity(Family.SDXL))


class _Boom:
    """A pickle payload that would run a command if unpickled unsafely."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch /tmp/networks_test_pwned",))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    gen = torch.Generator().manual_seed(0)
    root = tmp_path / "embeddings"
    (root / "sub").mkdir(parents=True)
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": torch.randn(2, TINY_HIDDEN, generator=gen)},
                "name": "other", "step": 500, "sd_checkpoint": "abcdef12", "sd_checkpoint_name": "base"},
               root / "sks style.pt")
    legacy = torch.nn.ParameterDict({"*": torch.nn.Parameter(torch.randn(1, TINY_HIDDEN, generator=gen))})
    torch.save({"string_to_param": legacy}, root / "sub" / "legacy.pt")
    torch.save({"<cat-toy>": torch.randn(TINY_HIDDEN, generator=gen)}, root / "cat.bin")
    save_file({"emb_params": torch.randn(3, TINY_HIDDEN, generator=gen)}, str(root / "neg.safetensors"))
    pair = {"clip_l": torch.randn(2, TINY_HIDDEN, generator=gen), "clip_g": torch.randn(2, TINY_HIDDEN, generator=gen)}
    save_file(pair, str(root / "xl_pair.safetensors"))
    save_file({"emb_params": torch.randn(1, 768, generator=gen)}, str(root / "wide.safetensors"))
    (root / "evil.pt").write_bytes(pickle.dumps({"string_to_param": _Boom()}, protocol=2))
    (root / "empty.pt").write_bytes(b"")
    (root / "notes.txt").write_text("not an embedding")
    return root


def test_database_reads_all_formats_and_refuses_pickled_code(folder: Path, sd1: ComponentSet) -> None:
    db = EmbeddingDatabase(folder)
    db.refresh()
    assert list(db.embeddings) == ["cat", "legacy", "neg", "sks style", "wide", "xl_pair"]
    assert db.embeddings["sks style"].n_vectors == 2 and db.embeddings["cat"].n_vectors == 1
    assert db.embeddings["neg"].vectors["*"].shape == (3, TINY_HIDDEN)
    assert set(db.errors) == {str(folder / "evil.pt")}
    assert "not executed" in db.errors[str(folder / "evil.pt")]
    assert not Path("/tmp/networks_test_pwned").exists()
    listing = db.listing(sd1)
    assert set(listing["loaded"]) == {"cat", "legacy", "neg", "sks style"}
    assert set(listing["skipped"]) == {"wide", "xl_pair"}
    assert listing["loaded"]["sks style"] == {"step": 500, "sd_checkpoint": "abcdef12", "sd_checkpoint_name": "base",
                                              "shape": TINY_HIDDEN, "vectors": 2}
    assert listing["skipped"]["xl_pair"]["shape"] == 2 * TINY_HIDDEN


def test_sdxl_takes_only_pairs(folder: Path, sdxl: ComponentSet) -> None:
    db = EmbeddingDatabase(folder)
    db.refresh()
    assert list(db.compatible(sdxl)) == ["xl_pair"]
    assert embedding_keys(sdxl.identity) == ("clip_l", "clip_g")


def test_ti_hashes_are_the_file_sha256_prefix(folder: Path) -> None:
    db = EmbeddingDatabase(folder)
    db.refresh()
    emb = db.embeddings["sks style"]
    expected = hashlib.sha256((folder / "sks style.pt").read_bytes()).hexdigest()[:12]
    assert ti_hashes_infotext([emb, db.embeddings["cat"]]).startswith(f"sks style: {expected}, cat: ")


def _ids(components: ComponentSet, text: str) -> list[int]:
    return components.tokenizers[0](text, add_special_tokens=False)["input_ids"]


def test_expand_tokens_replaces_the_name_by_one_slot_per_vector(folder: Path, sd1: ComponentSet) -> None:
    db = EmbeddingDatabase(folder)
    db.refresh()
    embeddings = db.compatible(sd1)
    prompt = _ids(sd1, "a photo in sks style, sks")
    ids, fixes = expand_tokens(prompt, sd1.tokenizers[0], embeddings)
    name_len = len(_ids(sd1, "sks style"))
    assert len(fixes) == 1 and fixes[0].embedding.name == "sks style"
    position = fixes[0].position
    assert ids[position : position + 2] == [PLACEHOLDER_TOKEN] * 2
    assert ids[:position] == prompt[:position] and ids[position + 2 :] == prompt[position + name_len :]
    assert torch.equal(fixes[0].vectors, embeddings["sks style"].vectors["*"])
    matcher = EmbeddingMatcher(sd1.tokenizers[0], embeddings)
    assert expand_tokens(prompt, matcher, {})[0] == ids


def _encode(components: ComponentSet, ids: list[int], fixes: list) -> torch.Tensor:
    row = [BOS, *ids, EOS] + [EOS] * (20 - len(ids))
    with torch.no_grad(), token_fixes(components.text_encoders[0], [[fix.shifted(1) for fix in fixes]]):
        return components.text_encoders[0](torch.tensor([row])).last_hidden_state


def test_embedding_changes_conditioning_only_from_its_position(folder: Path, sd1: ComponentSet) -> None:
    db = EmbeddingDatabase(folder)
    db.refresh()
    embeddings = db.compatible(sd1)
    ids, fixes = expand_tokens(_ids(sd1, "a photo in sks style"), sd1.tokenizers[0], embeddings)
    with_embedding = _encode(sd1, ids, fixes)
    placeholders_only = _encode(sd1, ids, [])
    first = fixes[0].position + 1  # BOS
    assert torch.equal(with_embedding[:, :first], placeholders_only[:, :first])  # causal: earlier positions unchanged
    assert not torch.equal(with_embedding[:, first], placeholders_only[:, first])
    assert not torch.equal(with_embedding[:, -1], placeholders_only[:, -1])


def test_prompt_without_embedding_is_bit_identical(folder: Path, sd1: ComponentSet) -> None:
    db = EmbeddingDatabase(folder)
    db.refresh()
    prompt = _ids(sd1, "a photo of a dog")
    ids, fixes = expand_tokens(prompt, sd1.tokenizers[0], db.compatible(sd1))
    assert ids == prompt and fixes == []
    row = torch.tensor([[BOS, *prompt, EOS, EOS]])
    with torch.no_grad():
        plain = sd1.text_encoders[0](row).last_hidden_state
        with token_fixes(sd1.text_encoders[0], [[]]):
            hooked = sd1.text_encoders[0](row).last_hidden_state
        after = sd1.text_encoders[0](row).last_hidden_state
    assert torch.equal(plain, hooked) and torch.equal(plain, after)
    assert not sd1.text_encoders[0].get_input_embeddings()._forward_hooks  # hook removed


def test_embed_tokens_and_sdxl_second_encoder_use_clip_g(folder: Path, sdxl: ComponentSet) -> None:
    db = EmbeddingDatabase(folder)
    db.refresh()
    pair = db.embeddings["xl_pair"]
    ids, fixes = expand_tokens(_ids(sdxl, "xl_pair art"), sdxl.tokenizers[1], db.compatible(sdxl), key="clip_g")
    input_ids = torch.tensor([[BOS, *ids, EOS]])
    embeds = embed_tokens(sdxl.text_encoders[1], input_ids, [[fix.shifted(1) for fix in fixes]])
    assert torch.equal(embeds[0, 1:3], pair.vectors["clip_g"])
    plain = sdxl.text_encoders[1].get_input_embeddings()(input_ids)
    assert torch.equal(embeds[0, 3:], plain[0, 3:]) and torch.equal(embeds[0, :1], plain[0, :1])
