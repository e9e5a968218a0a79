"""Scanning model folders, A1111 titles and names, and get_closet_checkpoint_match semantics."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from modules.errors import ModelNotFound
from modules.models.hashes import HashCache
from modules.models.identity import Family, ModelIdentity
from modules.models.records import Format, ModelCatalog, ScanRoots, natural_sort_key


def touch(path: Path, content: bytes = b"weights") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


class CountingProbe:
    def __init__(self) -> None:
        self.calls: list[Path] = []

    def __call__(self, path: Path) -> ModelIdentity:
        self.calls.append(path)
        return ModelIdentity(Family.SD1)


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    models = tmp_path / "models" / "Stable-diffusion"
    vae_dir = tmp_path / "models" / "VAE"
    extra = tmp_path / "extra-ckpts"
    touch(models / "anything-v3.safetensors", b"a" * 100)
    touch(models / "sub" / "realistic.ckpt", b"b" * 0x110000)  # long enough for A1111's legacy hash window
    touch(models / "sub" / "realistic.vae.safetensors")
    touch(models / "model10.safetensors")
    touch(models / "model9.safetensors")
    touch(models / "notes.txt")
    (models / "pipe").mkdir()
    (models / "pipe" / "model_index.json").write_text("{}")
    touch(models / "pipe" / "unet" / "diffusion_pytorch_model.safetensors")
    touch(extra / "extra.safetensors")
    single = touch(tmp_path / "elsewhere" / "single.safetensors")
    touch(vae_dir / "vae-ft-mse.safetensors")
    touch(vae_dir / "sdxl_vae.safetensors")
    touch(vae_dir / "folder-vae" / "diffusion_pytorch_model.safetensors")
    (vae_dir / "folder-vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    return {"models": models, "vae": vae_dir, "extra": extra, "single": single, "cache": tmp_path / "cache.json"}


def catalog_for(layout: dict[str, Path], probe_fn=None) -> ModelCatalog:
    roots = ScanRoots((layout["extra"], layout["models"]), (layout["vae"],), layout["single"])
    return ModelCatalog(roots, HashCache(layout["cache"]), probe_fn or CountingProbe())


def test_scan_lists_a1111_names(layout: dict[str, Path]) -> None:
    catalog = catalog_for(layout)
    names = [record.name for record in catalog.checkpoints()]
    assert names == ["anything-v3.safetensors", "extra.safetensors", "model9.safetensors", "model10.safetensors",
                     "pipe", "single.safetensors", "sub/realistic.ckpt"]
    by_name = {record.name: record for record in catalog.checkpoints()}
    assert by_name["pipe"].format is Format.DIFFUSERS and by_name["sub/realistic.ckpt"].format is Format.CKPT
    assert [vae.name for vae in catalog.vaes()] == ["folder-vae", "realistic.vae.safetensors", "sdxl_vae.safetensors",
                                                    "vae-ft-mse.safetensors"]
    assert {vae.name: vae.format for vae in catalog.vaes()}["folder-vae"] is Format.DIFFUSERS


def test_titles_names_and_hashes(layout: dict[str, Path]) -> None:
    catalog = catalog_for(layout)
    record = catalog.find("sub/realistic.ckpt")
    assert (record.title, record.model_name, record.name_for_extra) == ("sub/realistic.ckpt", "sub_realistic",
                                                                         "realistic")
    assert record.sha256 is None and record.shorthash is None
    sha = record.calculate_sha256()
    assert sha == hashlib.sha256(b"b" * 0x110000).hexdigest()
    assert record.title == f"sub/realistic.ckpt [{sha[:10]}]" and record.short_title == f"realistic [{sha[:10]}]"
    assert catalog_for(layout).find("sub/realistic.ckpt").title == record.title  # cached in cache.json
    assert record.legacy_hash == hashlib.sha256(b"b" * 0x10000).hexdigest()[:8]
    pipe = catalog.find("pipe")
    assert pipe.calculate_sha256() is None and pipe.title == "pipe" and pipe.legacy_hash == ""


def test_find_follows_get_closet_checkpoint_match(layout: dict[str, Path]) -> None:
    catalog = catalog_for(layout)
    record = catalog.find("sub/realistic.ckpt")
    sha = record.calculate_sha256()
    for alias in (record.title, "sub/realistic.ckpt", "sub_realistic", "realistic", sha[:10], sha, sha[:8],
                  f"realistic [{sha[:10]}]", record.legacy_hash):
        assert catalog.find(alias) is record, alias
    assert catalog.find("sub/realistic.ckpt [0000000000]") is record  # stale hash in an infotext
    assert catalog.find("model").name == "model9.safetensors"  # shortest title containing the text
    assert catalog.find("anything").name == "anything-v3.safetensors"
    with pytest.raises(ModelNotFound) as info:
        catalog.find("sd_xl_base")
    assert "sd_xl_base" in str(info.value) and "anything-v3.safetensors" in str(info.value)
    assert catalog.match("") is None


def test_no_checkpoints_message_says_where(tmp_path: Path) -> None:
    catalog = ModelCatalog(ScanRoots((tmp_path / "models",)), HashCache(None))
    with pytest.raises(ModelNotFound, match="No checkpoints were found"):
        catalog.find("x")


def test_identity_is_probed_lazily_once(layout: dict[str, Path]) -> None:
    probe = CountingProbe()
    catalog = catalog_for(layout, probe)
    assert probe.calls == []
    record = catalog.find("anything-v3.safetensors")
    assert record.identity == ModelIdentity(Family.SD1) and record.identity == ModelIdentity(Family.SD1)
    assert probe.calls == [record.path]


def test_refresh_keeps_unchanged_records_and_sees_changes(layout: dict[str, Path]) -> None:
    probe = CountingProbe()
    catalog = catalog_for(layout, probe)
    kept = catalog.find("anything-v3.safetensors")
    changed = catalog.find("model9.safetensors")
    _ = kept.identity, changed.identity
    touch(layout["models"] / "new.safetensors")
    touch(layout["models"] / "model9.safetensors", b"retrained, longer")
    (layout["models"] / "model10.safetensors").unlink()
    touch(layout["vae"] / "new.vae.pt")
    catalog.refresh()
    assert catalog.find("anything-v3.safetensors") is kept
    assert catalog.find("model9.safetensors") is not changed
    assert catalog.find("new.safetensors").name == "new.safetensors"
    assert "model10.safetensors" not in [r.name for r in catalog.checkpoints()]
    assert "new.vae.pt" in [v.name for v in catalog.vaes()]
    _ = catalog.find("anything-v3.safetensors").identity
    assert len(probe.calls) == 2


def test_vae_lookup_and_automatic_near_checkpoint(layout: dict[str, Path]) -> None:
    catalog = catalog_for(layout)
    assert catalog.find_vae("vae-ft-mse.safetensors").name == "vae-ft-mse.safetensors"
    assert catalog.find_vae("vae-ft-mse").name == "vae-ft-mse.safetensors"
    with pytest.raises(ModelNotFound, match="sdxl_vae.safetensors"):
        catalog.find_vae("missing.pt")
    assert catalog.vae_near(catalog.find("sub/realistic.ckpt")).name == "realistic.vae.safetensors"
    assert catalog.vae_near(catalog.find("anything-v3.safetensors")) is None


def test_natural_sort() -> None:
    assert sorted(["b10", "B2", "a"], key=natural_sort_key) == ["a", "B2", "b10"]


def test_vae_short_hash_for_the_infotext(layout: dict[str, Path]) -> None:
    """The infotext's "VAE hash" reads `VaeRecord.shorthash` (it once existed only on checkpoints)."""
    vae = catalog_for(layout).find_vae("vae-ft-mse.safetensors")
    assert vae.shorthash is None  # not hashed yet: never hashes a file just to list it
    digest = vae.calculate_sha256()
    assert digest == hashlib.sha256((layout["vae"] / "vae-ft-mse.safetensors").read_bytes()).hexdigest()
    assert vae.shorthash == digest[:10]
