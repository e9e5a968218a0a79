"""Checkpoint identification: stripped key/shape fixtures, real tiny files, diffusers folders, unsafe pickles."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modules.errors import CorruptFile, UnsafeCheckpoint, UnsupportedModel
from modules.models import probe as probe_module
from modules.models.convert import save_single_file
from modules.models.identity import Family, ModelIdentity, Prediction, Variant
from modules.models.probe import StrippedKeys, classify, identify, predicts_v, probe, unet_from_ldm_state
from modules.models.tiny import ALL_TINY_IDENTITIES, build_tiny_components, tiny_unet_config

UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
SD1_KEYS = {"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (49408, 768)}
SD2_KEYS = {"cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": (3072, 1024)}
SDXL_KEYS = {
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
    "conditioner.embedders.1.model.ln_final.weight": (1280,),
}
REFINER_KEYS = {"conditioner.embedders.0.model.ln_final.weight": (1280,)}


def stripped(text_keys: dict[str, tuple[int, ...]], in_channels: int = 4, *extra: str) -> StrippedKeys:
    shapes: dict[str, tuple[int, ...]] = {UNET_IN: (320, in_channels, 3, 3), "first_stage_model.decoder.conv_in.weight":
                                          (512, 4, 3, 3), **text_keys}
    shapes.update({key: (0,) for key in extra})
    return StrippedKeys(shapes)


def refuse_v_test(path: Path) -> bool:
    raise AssertionError("the runtime v-prediction test must not run here")


@pytest.mark.parametrize(
    ("keys", "channels", "expected"),
    [
        (SD1_KEYS, 4, ModelIdentity(Family.SD1)),
        (SD1_KEYS, 9, ModelIdentity(Family.SD1, Variant.INPAINT)),
        (SD2_KEYS, 9, ModelIdentity(Family.SD2, Variant.INPAINT)),
        (SDXL_KEYS, 4, ModelIdentity(Family.SDXL)),
        (SDXL_KEYS, 9, ModelIdentity(Family.SDXL, Variant.INPAINT)),
        (REFINER_KEYS, 4, ModelIdentity(Family.SDXL_REFINER)),
    ],
)
def test_stripped_keys_identify_family_and_variant(keys, channels, expected, tmp_path: Path) -> None:
    assert identify(stripped(keys, channels), tmp_path / "m.safetensors", refuse_v_test) == expected


def test_v_pred_marker_wins_for_any_family(tmp_path: Path) -> None:
    for keys, family in ((SD1_KEYS, Family.SD1), (SD2_KEYS, Family.SD2), (SDXL_KEYS, Family.SDXL)):
        got = identify(stripped(keys, 4, "v_pred"), tmp_path / "m.safetensors", refuse_v_test)
        assert got == ModelIdentity(family, prediction=Prediction.V)


def test_sd2_without_marker_runs_the_runtime_test_once_and_lazily(tmp_path: Path) -> None:
    calls: list[Path] = []

    def fake(path: Path) -> bool:
        calls.append(path)
        return True

    target = tmp_path / "sd2.safetensors"
    assert identify(stripped(SD2_KEYS), target, fake) == ModelIdentity(Family.SD2, prediction=Prediction.V)
    assert calls == [target]
    identify(stripped(SD1_KEYS), tmp_path / "sd1.safetensors", fake)
    identify(stripped(SD2_KEYS, 9), tmp_path / "inpaint.safetensors", fake)
    assert calls == [target]


def test_sidecar_yaml_sets_prediction(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    (tmp_path / "model.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert identify(stripped(SD2_KEYS), target, refuse_v_test).prediction is Prediction.V
    (tmp_path / "model.yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")
    assert identify(stripped(SD2_KEYS), target, refuse_v_test).prediction is Prediction.EPSILON


def test_embedded_configs_set_prediction() -> None:
    meta = {"sdwebui.configs": json.dumps({"scheduler": {"prediction_type": "v_prediction"}})}
    source = StrippedKeys(dict(stripped(SD2_KEYS).shapes), meta)
    assert identify(source, Path("/nonexistent/m.safetensors"), refuse_v_test).prediction is Prediction.V


@pytest.mark.parametrize(
    ("channels", "words"),
    [(5, "depth"), (8, "instruct-pix2pix"), (6, "6 input channels")],
)
def test_unsupported_variants_are_named(channels: int, words: str) -> None:
    with pytest.raises(UnsupportedModel, match=words):
        classify(stripped(SD2_KEYS, channels), "x.safetensors")


@pytest.mark.parametrize(
    ("keys", "guess"),
    [
        ({f"lora_unet_down_blocks_{i}.lora_down.weight": (4, 320) for i in range(1130)}, "looks like a LoRA"),
        ({"encoder.conv_in.weight": (128, 3, 3, 3), "decoder.conv_out.weight": (3, 128, 3, 3)}, "VAE alone"),
        ({"double_blocks.0.img_attn.qkv.weight": (9216, 3072)}, "Flux"),
        ({"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": (4608, 1536)}, "SD3"),
        ({"string_to_param": (1, 768)}, "textual inversion"),
        ({"down_blocks.0.resnets.0.conv1.weight": (320, 320, 3, 3)}, "single diffusers component"),
        ({UNET_IN: (320, 4, 3, 3)}, "UNet but no text encoder"),
        ({"foo": (3,), "bar": (4, 4)}, "match no known model layout"),
    ],
)
def test_foreign_files_get_a_clear_message(keys: dict[str, tuple[int, ...]], guess: str) -> None:
    with pytest.raises(UnsupportedModel) as info:
        classify(StrippedKeys(keys), "models/Stable-diffusion/thing.safetensors")
    message = str(info.value)
    assert "thing.safetensors" in message and f"found {len(keys)} keys" in message and guess in message


@pytest.mark.slow
@pytest.mark.parametrize("identity", ALL_TINY_IDENTITIES, ids=lambda i: f"{i.config_name}-{i.prediction.value}")
def test_tiny_safetensors_of_every_family(identity: ModelIdentity, tiny_checkpoints: dict) -> None:
    assert probe(tiny_checkpoints[identity], v_test=refuse_v_test) == identity


@pytest.mark.slow
def test_ckpt_files_probe_through_the_restricted_unpickler(tmp_path: Path) -> None:
    identity = ModelIdentity(Family.SDXL, Variant.INPAINT)
    path = tmp_path / "model.ckpt"
    save_single_file(build_tiny_components(identity), path, embed_configs=False)
    assert probe(path, v_test=refuse_v_test) == identity


class _Payload:
    """Unpickling this would create a file: proof that the pickle was executed."""

    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_unsafe_pickle_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    payload = _Payload()
    payload.marker = marker
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {UNET_IN: torch.zeros(1)}, "x": payload}, path)
    with pytest.raises(UnsafeCheckpoint, match="evil.ckpt"):
        probe(path)
    assert not marker.exists()


def test_lightning_era_ckpt_with_callbacks_and_numpy_scalars(tmp_path: Path, monkeypatch) -> None:
    """Original SD training checkpoints pickle a ModelCheckpoint callback and numpy scalars beside the weights."""
    module = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")

    class ModelCheckpoint:
        def __init__(self) -> None:
            self.best_model_score = torch.tensor(0.5)
            self.monitor = "val/loss"

    ModelCheckpoint.__module__ = module.__name__
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    module.ModelCheckpoint = ModelCheckpoint
    path = tmp_path / "sd-v1-4-full-ema.ckpt"
    state = {UNET_IN: torch.zeros(320, 4, 3, 3), "cond_stage_model.transformer.x": torch.zeros(2)}
    with monkeypatch.context() as patch:
        for name in ("pytorch_lightning", "pytorch_lightning.callbacks"):
            patch.setitem(sys.modules, name, types.ModuleType(name))
        patch.setitem(sys.modules, module.__name__, module)
        torch.save({"state_dict": state, "callbacks": {"cb": ModelCheckpoint()}, "global_step": 470000,
                    "loss": np.float64(0.1)}, path)
    assert probe(path) == ModelIdentity(Family.SD1)


def test_legacy_non_zip_pickle_without_mmap(tmp_path: Path) -> None:
    path = tmp_path / "old.ckpt"
    state = {UNET_IN: torch.zeros(320, 4, 3, 3), "cond_stage_model.transformer.x": torch.zeros(2)}
    torch.save({"state_dict": state}, path, _use_new_zipfile_serialization=False)
    assert probe(path) == ModelIdentity(Family.SD1)


def test_corrupt_and_unknown_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CorruptFile, match="bad.safetensors"):
        probe(bad)
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(UnsupportedModel, match="unknown file type"):
        probe(other)
    truncated = tmp_path / "truncated.ckpt"
    torch.save({"state_dict": {UNET_IN: torch.zeros(8)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(CorruptFile, match="truncated.ckpt"):
        probe(truncated)
    lora = tmp_path / "lora.safetensors"
    save_file({"lora_te_text_model_encoder_layers_0.alpha": torch.zeros(())}, str(lora))
    with pytest.raises(UnsupportedModel, match="LoRA"):
        probe(lora)


@pytest.mark.parametrize("identity", ALL_TINY_IDENTITIES, ids=lambda i: f"{i.config_name}-{i.prediction.value}")
def test_diffusers_folders(identity: ModelIdentity, tmp_path: Path, diffusers_skeleton) -> None:
    assert probe(diffusers_skeleton(tmp_path / "pipe", identity)) == identity


def test_non_sd_diffusers_folder_is_unsupported(tmp_path: Path) -> None:
    (tmp_path / "flux").mkdir()
    (tmp_path / "flux" / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    (tmp_path / "flux" / "unet").mkdir()
    (tmp_path / "flux" / "unet" / "config.json").write_text("{}")
    with pytest.raises(UnsupportedModel, match="FluxPipeline"):
        probe(tmp_path / "flux")


def test_runtime_v_criterion_on_a_tiny_unet() -> None:
    identity = ModelIdentity(Family.SD2)
    unet = build_tiny_components(identity).unet
    torch.nn.init.zeros_(unet.conv_out.weight)
    torch.nn.init.zeros_(unet.conv_out.bias)
    assert predicts_v(unet) is False  # output 0: mean(out - 0.5) = -0.5
    torch.nn.init.constant_(unet.conv_out.bias, -5.0)
    assert predicts_v(unet) is True  # mean(out - 0.5) = -5.5 < -1


@pytest.mark.slow
def test_runtime_test_end_to_end_on_a_file_without_marker(tmp_path: Path) -> None:
    """An SD2 file with no marker and no configs: the UNet is rebuilt from the file and run (A1111's test)."""
    identity = ModelIdentity(Family.SD2)
    components = build_tiny_components(identity)
    torch.nn.init.zeros_(components.unet.conv_out.weight)
    torch.nn.init.constant_(components.unet.conv_out.bias, -5.0)
    path = tmp_path / "sd2.safetensors"
    save_single_file(components, path, embed_configs=False)
    rebuilt = unet_from_ldm_state(probe_module._unet_tensors(path), tiny_unet_config(identity))
    reference = components.unet.state_dict()
    assert all(torch.equal(reference[key], value) for key, value in rebuilt.state_dict().items())

    def tiny_test(p: Path) -> bool:
        return probe_module.sd2_runtime_v_test(p, tiny_unet_config(identity))

    assert probe(path, v_test=tiny_test) == ModelIdentity(Family.SD2, prediction=Prediction.V)


def test_sd2_unet_config_is_the_real_architecture() -> None:
    config = probe_module.sd2_unet_config()
    assert config["cross_attention_dim"] == 1024 and config["block_out_channels"] == [320, 640, 1280, 1280]
    assert config["use_linear_projection"] is True and config["in_channels"] == 4
