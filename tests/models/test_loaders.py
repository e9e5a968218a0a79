"""Loading single files, diffusers folders and standalone VAEs back into exactly the components we saved."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
from safetensors.torch import save_file

from modules.errors import CorruptFile, UnsafeCheckpoint, UnsupportedModel
from modules.models.components import ComponentSet
from modules.models.convert import (
    save_diffusers_folder_as_single_file,
    save_single_file,
    to_original_state_dict,
    vae_to_original,
)
from modules.models.identity import Family, ModelIdentity, Prediction, Variant
from modules.models.loaders import load_checkpoint, load_diffusers_folder, load_vae, read_checkpoint
from modules.models.tiny import ALL_TINY_IDENTITIES, build_tiny_components

PROMPT = "a photo of an astronaut riding a horse, (masterpiece:1.2)"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def assert_same_components(loaded: ComponentSet, original: ComponentSet) -> None:
    assert loaded.identity == original.identity
    for got, want in zip(loaded.modules(), original.modules(), strict=True):
        assert type(got) is type(want)
        got_params, want_params = dict(got.named_parameters()), dict(want.named_parameters())
        assert got_params.keys() == want_params.keys()
        for name, tensor in want_params.items():
            assert torch.equal(got_params[name], tensor), name
    for got, want in zip(loaded.tokenizers, original.tokenizers, strict=True):
        assert got.model_max_length == 77
        assert got(PROMPT, padding="max_length").input_ids == want(PROMPT, padding="max_length").input_ids
    assert loaded.scheduler_config["prediction_type"] == original.identity.prediction.value


@pytest.mark.slow
@pytest.mark.parametrize("identity", ALL_TINY_IDENTITIES, ids=lambda i: f"{i.config_name}-{i.prediction.value}")
def test_single_file_round_trip(identity: ModelIdentity, tmp_path: Path) -> None:
    original = build_tiny_components(identity, seed=7)
    path = tmp_path / "model.safetensors"
    save_single_file(original, path)
    assert_same_components(load_checkpoint(path, identity), original)


@pytest.mark.slow
def test_ckpt_round_trip_with_sidecar_configs(tmp_path: Path) -> None:
    identity = ModelIdentity(Family.SD1)
    original = build_tiny_components(identity, seed=3)
    path = tmp_path / "model.ckpt"
    save_single_file(original, path)
    assert_same_components(load_checkpoint(path, identity), original)
    half = load_checkpoint(path, identity, dtype=torch.float16, vae_dtype=torch.float32)
    assert half.unet.dtype == torch.float16 and half.text_encoders[0].dtype == torch.float16
    assert half.vae.dtype == torch.float32 and half.dtype == torch.float16


@pytest.mark.slow
def test_bundled_configs_are_used_without_embedded_ones(tmp_path: Path) -> None:
    """A tiny file without its configs is read against the real SD1 architecture: a clear mismatch error."""
    path = tmp_path / "bare.safetensors"
    save_single_file(build_tiny_components(ModelIdentity(Family.SD1)), path, embed_configs=False)
    with pytest.raises(UnsupportedModel, match=r"bare\.safetensors: the UNet weights do not match its config: missing"):
        load_checkpoint(path, ModelIdentity(Family.SD1))


@pytest.mark.slow
def test_missing_weights_are_named(tmp_path: Path) -> None:
    identity = ModelIdentity(Family.SDXL)
    components = build_tiny_components(identity)
    path = tmp_path / "partial.safetensors"
    save_single_file(components, path)
    state = read_checkpoint(path)
    del state.state_dict["conditioner.embedders.1.model.ln_final.weight"]
    save_file(state.state_dict, str(path), metadata={"sdwebui.configs": json.dumps(state.configs)})
    with pytest.raises(UnsupportedModel, match=r"partial\.safetensors: the text_encoder_2 .*final_layer_norm\.weight"):
        load_checkpoint(path, identity)


def test_malicious_pickle_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # what a malicious checkpoint does: run code while unpickling
            return (Path.touch, (marker,))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": Payload()}, path)
    with pytest.raises(UnsafeCheckpoint, match=r"evil\.ckpt"):
        load_checkpoint(path, ModelIdentity(Family.SD1))
    legacy = tmp_path / "evil_legacy.pt"
    legacy.write_bytes(pickle.dumps({"payload": Payload()}))
    with pytest.raises(UnsafeCheckpoint, match=r"evil_legacy\.pt"):
        read_checkpoint(legacy)
    assert not marker.exists()


@pytest.mark.slow
def test_truncated_files_are_corrupt(tmp_path: Path) -> None:
    components = build_tiny_components(ModelIdentity(Family.SD1))
    for name in ("cut.safetensors", "cut.ckpt"):
        path = tmp_path / name
        save_single_file(components, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        with pytest.raises(CorruptFile, match=name.replace(".", r"\.")):
            load_checkpoint(path, ModelIdentity(Family.SD1))


@pytest.mark.slow
def test_diffusers_folder_round_trip(tmp_path: Path) -> None:
    identity = ModelIdentity(Family.SD1, prediction=Prediction.V)
    original = build_tiny_components(identity, seed=5)
    pipe = StableDiffusionPipeline(
        vae=original.vae, text_encoder=original.text_encoders[0], tokenizer=original.tokenizers[0],
        unet=original.unet, scheduler=EulerDiscreteScheduler.from_config(original.scheduler_config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(tmp_path / "sd1-folder")
    loaded = load_diffusers_folder(tmp_path / "sd1-folder")
    assert_same_components(loaded, original)

    single = tmp_path / "converted.safetensors"
    assert save_diffusers_folder_as_single_file(tmp_path / "sd1-folder", single) == identity
    assert_same_components(load_checkpoint(single, identity), original)


@pytest.mark.slow
def test_sdxl_diffusers_folder_identity_is_inferred(tmp_path: Path) -> None:
    identity = ModelIdentity(Family.SDXL, Variant.INPAINT)
    original = build_tiny_components(identity)
    pipe = StableDiffusionXLPipeline(
        vae=original.vae, text_encoder=original.text_encoders[0], text_encoder_2=original.text_encoders[1],
        tokenizer=original.tokenizers[0], tokenizer_2=original.tokenizers[1], unet=original.unet,
        scheduler=EulerDiscreteScheduler.from_config(original.scheduler_config),
    )
    pipe.save_pretrained(tmp_path / "xl", variant="fp16")
    assert_same_components(load_diffusers_folder(tmp_path / "xl"), original)
    with pytest.raises(UnsupportedModel, match="model_index.json"):
        load_diffusers_folder(tmp_path / "xl" / "unet")


@pytest.mark.slow
def test_standalone_vae_files(tmp_path: Path) -> None:
    base = build_tiny_components(ModelIdentity(Family.SD1), seed=1)
    replacement = build_tiny_components(ModelIdentity(Family.SD1), seed=2).vae
    expected = replacement.state_dict()
    original_layout = vae_to_original(expected, prefix="")
    files = {
        "a1111.safetensors": lambda p: save_file({k: v.contiguous() for k, v in original_layout.items()}, str(p)),
        "a1111.pt": lambda p: torch.save({"state_dict": original_layout, "loss.w": torch.ones(1)}, p),
        "full.ckpt": lambda p: torch.save({"state_dict": to_original_state_dict(
            ComponentSet(base.identity, base.unet, replacement, base.text_encoders, (), {}))}, p),
        "diffusers.safetensors": lambda p: save_file({k: v.contiguous() for k, v in expected.items()}, str(p)),
    }
    for name, write in files.items():
        write(tmp_path / name)
        vae = load_vae(tmp_path / name, dict(base.vae.config))
        loaded = vae.state_dict()
        assert loaded.keys() == expected.keys(), name
        assert all(torch.equal(loaded[k], expected[k]) for k in expected), name


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"")
    with pytest.raises(UnsupportedModel, match=r"model\.onnx"):
        load_checkpoint(path, ModelIdentity(Family.SD1))



def test_training_checkpoint_extras_are_loaded_as_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Old .ckpt files pickle a Lightning callback and numpy scalars next to the weights: allowed, never run."""
    import sys
    import types

    import numpy

    class ModelCheckpoint:
        pass

    name = "pytorch_lightning.callbacks.model_checkpoint"
    ModelCheckpoint.__module__, ModelCheckpoint.__qualname__ = name, "ModelCheckpoint"
    callback = ModelCheckpoint()
    callback.best_model_score = numpy.float64(0.5)
    path = tmp_path / "trained.ckpt"
    weights = {"model.diffusion_model.out.2.bias": torch.ones(4)}
    with monkeypatch.context() as patch:  # the class exists only while the file is written
        for package in ("pytorch_lightning", "pytorch_lightning.callbacks", name):
            patch.setitem(sys.modules, package, types.ModuleType(package))
        sys.modules[name].ModelCheckpoint = ModelCheckpoint
        torch.save({"state_dict": weights, "callbacks": {"cb": callback}, "step": numpy.int64(3)}, path)
    assert read_checkpoint(path).state_dict.keys() == weights.keys()
