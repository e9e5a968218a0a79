"""Checkpoint Merger (`modules.models.merge`) on tiny single-file checkpoints: the arithmetic, the loadable
result, inpainting channels, baked VAE, discarded weights, metadata and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from modules.errors import UserError
from modules.models.convert import save_single_file, vae_to_original
from modules.models.identity import Family, ModelIdentity, Variant
from modules.models.keys import CONFIGS_METADATA_KEY
from modules.models.loaders import load_checkpoint
from modules.models.manager import ModelManager
from modules.models.merge import MergeInputs, MergeRequest, run_merge
from modules.models.state_dict import read_metadata, read_state_dict
from modules.models.tiny import build_tiny_components
from modules.paths import DataPaths

SD1 = ModelIdentity(Family.SD1)
UNET_KEY = "model.diffusion_model.input_blocks.0.0.weight"


@pytest.fixture
def manager(tmp_path: Path) -> ModelManager:
    paths = DataPaths(tmp_path)
    paths.checkpoints.mkdir(parents=True)
    for seed, name in enumerate(("a", "b", "c")):
        save_single_file(build_tiny_components(SD1, seed=seed), paths.checkpoints / f"{name}.safetensors")
    save_single_file(build_tiny_components(ModelIdentity(Family.SD1, Variant.INPAINT), seed=3),
                     paths.checkpoints / "inpaint.safetensors")
    paths.vae.mkdir(parents=True)
    vae = build_tiny_components(SD1, seed=7).vae
    from safetensors.torch import save_file

    save_file({key.removeprefix("first_stage_model."): value.contiguous()
               for key, value in vae_to_original(vae.state_dict()).items()}, str(paths.vae / "seven.safetensors"))
    return ModelManager(paths)


def _inputs(manager: ModelManager, a: str, b: str | None = None, c: str | None = None,
            vae: str | None = None) -> MergeInputs:
    find = manager.resolve_checkpoint
    return MergeInputs(find(a), find(b) if b else None, find(c) if c else None,
                       manager.catalog.find_vae(vae) if vae else None)


def _folder(manager: ModelManager) -> Path:
    return manager.catalog.roots.checkpoint_dirs[0]


def _weights(manager: ModelManager, name: str) -> dict[str, torch.Tensor]:
    return read_state_dict(manager.resolve_checkpoint(name).path)


def test_weighted_sum_is_a1111s_formula_and_the_result_loads(manager: ModelManager) -> None:
    folder = _folder(manager)
    path = run_merge(MergeRequest("a", "b", method="Weighted sum", multiplier=0.3), _inputs(manager, "a", "b"),
                     folder)
    assert path == folder / "0.7(a) + 0.3(b).safetensors"
    merged, a, b = read_state_dict(path), _weights(manager, "a"), _weights(manager, "b")
    assert set(merged) == set(a)
    for key in (UNET_KEY, "first_stage_model.decoder.conv_out.weight",
                "cond_stage_model.transformer.text_model.final_layer_norm.weight"):
        assert torch.equal(merged[key], a[key] * (1 - 0.3) + b[key] * 0.3), key
    header = read_metadata(path)
    assert header[CONFIGS_METADATA_KEY] == read_metadata(manager.resolve_checkpoint("a").path)[CONFIGS_METADATA_KEY]
    recipe = json.loads(header["sd_merge_recipe"])
    assert (recipe["interp_method"], recipe["multiplier"]) == ("Weighted sum", 0.3)
    assert recipe["primary_model_hash"] == manager.resolve_checkpoint("a").sha256
    loaded = load_checkpoint(path, SD1)  # a checkpoint like any other (our embedded configs came along)
    original_a = load_checkpoint(manager.resolve_checkpoint("a").path, SD1)
    original_b = load_checkpoint(manager.resolve_checkpoint("b").path, SD1)
    assert torch.equal(loaded.unet.conv_in.weight,
                       original_a.unet.conv_in.weight * 0.7 + original_b.unet.conv_in.weight * 0.3)
    with pytest.raises(UserError, match="already exists"):  # never overwritten
        run_merge(MergeRequest("a", "b", multiplier=0.3), _inputs(manager, "a", "b"), folder)


def test_add_difference_half_precision_ckpt_and_discarded_weights(manager: ModelManager) -> None:
    request = MergeRequest("a", "b", "c", method="Add difference", multiplier=0.5, name="diff",
                           checkpoint_format="ckpt", save_as_half=True,
                           discard_weights=r"^first_stage_model\.encoder\.")
    path = run_merge(request, _inputs(manager, "a", "b", "c"), _folder(manager))
    assert path.name == "diff.ckpt" and path.with_name("diff.configs.json").is_file()
    merged, a, b, c = (read_state_dict(path), _weights(manager, "a"), _weights(manager, "b"), _weights(manager, "c"))
    assert merged[UNET_KEY].dtype == torch.float16
    assert torch.equal(merged[UNET_KEY], (a[UNET_KEY] + (b[UNET_KEY] - c[UNET_KEY]) * 0.5).half())
    assert not any(key.startswith("first_stage_model.encoder.") for key in merged)
    assert any(key.startswith("first_stage_model.decoder.") for key in merged)


def test_inpainting_a_keeps_its_extra_channels_and_the_reverse_is_refused(manager: ModelManager) -> None:
    path = run_merge(MergeRequest("inpaint", "b", multiplier=1.0, name="mine"), _inputs(manager, "inpaint", "b"),
                     _folder(manager))
    assert path.name == "mine.inpainting.safetensors"  # A1111's suffix
    merged, a, b = read_state_dict(path), _weights(manager, "inpaint"), _weights(manager, "b")
    assert merged[UNET_KEY].shape[1] == 9
    assert torch.equal(merged[UNET_KEY][:, :4], b[UNET_KEY])
    assert torch.equal(merged[UNET_KEY][:, 4:], a[UNET_KEY][:, 4:])
    with pytest.raises(UserError, match="A must be the inpainting model"):
        run_merge(MergeRequest("b", "inpaint"), _inputs(manager, "b", "inpaint"), _folder(manager))


def test_bake_in_vae_without_interpolation(manager: ModelManager) -> None:
    request = MergeRequest("a", method="No interpolation", name="baked", bake_in_vae="seven.safetensors")
    path = run_merge(request, _inputs(manager, "a", vae="seven.safetensors"), _folder(manager))
    merged, a = read_state_dict(path), _weights(manager, "a")
    vae = read_state_dict(manager.catalog.find_vae("seven.safetensors").path)
    assert torch.equal(merged["first_stage_model.decoder.conv_out.weight"], vae["decoder.conv_out.weight"])
    assert torch.equal(merged[UNET_KEY], a[UNET_KEY])


@pytest.mark.parametrize("request_, message", [
    (MergeRequest("a", method="Weighted sum"), "needs a secondary model"),
    (MergeRequest("a", "b", method="Add difference"), "needs a tertiary model"),
    (MergeRequest("a", "b", discard_weights="(unclosed"), "not a valid regular expression"),
    (MergeRequest("a", "b", name="../escape"), "no folders"),
    (MergeRequest("a", "b", checkpoint_format="zip"), "Unknown checkpoint format"),
])
def test_refusals_before_anything_is_read(manager: ModelManager, request_: MergeRequest, message: str) -> None:
    with pytest.raises(UserError, match=message):
        run_merge(request_, _inputs(manager, request_.primary, request_.secondary), _folder(manager))
    assert sorted(path.name for path in _folder(manager).iterdir()) == \
        ["a.safetensors", "b.safetensors", "c.safetensors", "inpaint.safetensors"]
