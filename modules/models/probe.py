"""Identify a checkpoint (family, variant, prediction type) from its keys and shapes, without reading tensors.

Single files are read through a `KeySource` (key names, shapes, metadata from `state_dict.read_header`); tests
pass `StrippedKeys` built from key/shape lists. The rules are structural, so they hold for tiny test models too:
family by the text encoder key prefixes (`keys.TEXT_ENCODER_LAYOUTS`); variant by the input channels of the UNet
(4 normal, 9 inpaint, others refused with a clear message); prediction, first match wins: a `v_pred` key, our
embedded configs, a sidecar `<stem>.yaml` with `parameterization: "v"`, for a plain SD2 file A1111's runtime
test (`sd2_runtime_v_test`, run only for such files), else epsilon. Diffusers folders are identified from
`model_index.json` and the component `config.json` files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol, Sequence

import torch
import yaml

from modules.errors import CorruptFile, UnsupportedModel
from modules.models.configs import embedded_configs, read_json_object
from modules.models.identity import Family, ModelIdentity, Prediction, Variant
from modules.models.keys import (
    REFINER_TEXT_PREFIX,
    SD1_TEXT_PREFIX,
    SD2_TEXT_PREFIX,
    SDXL_TEXT1_PREFIX,
    SDXL_TEXT2_PREFIX,
    UNET_INPUT_KEY,
    UNET_PREFIX,
    V_PRED_KEY,
    VAE_PREFIX,
)
from modules.models.state_dict import read_header, read_state_dict
from modules.paths import family_config_dir

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel

log = logging.getLogger(__name__)

SUPPORTED = "SD1, SD2, SDXL or SDXL refiner"

VTest = Callable[[Path], bool]


class KeySource(Protocol):
    """What the probe needs from a checkpoint: key names, tensor shapes and (safetensors) metadata."""

    def keys(self) -> Iterable[str]: ...

    def shape(self, key: str) -> tuple[int, ...]: ...

    def metadata(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class StrippedKeys:
    """Keys and shapes without tensors: from a file's header (`from_file`) or a test fixture."""

    shapes: Mapping[str, Sequence[int]]
    meta: Mapping[str, str] = field(default_factory=dict)

    def keys(self) -> Iterable[str]:
        return self.shapes.keys()

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.shapes[key])

    def metadata(self) -> Mapping[str, str]:
        return self.meta

    @classmethod
    def from_file(cls, path: Path) -> "StrippedKeys":
        """A safetensors header, or a `.ckpt` through the restricted unpickler with its tensors memory-mapped."""
        header = read_header(path)
        return cls(header.shapes, header.metadata)


@dataclass(frozen=True)
class Structure:
    """What the keys alone say: family, variant and whether an explicit v-prediction marker is present."""

    family: Family
    variant: Variant
    v_marker: bool


def _has_prefix(keys: Sequence[str], prefix: str) -> bool:
    return any(key.startswith(prefix) for key in keys)


def _guess_foreign(keys: Sequence[str]) -> str:
    """A short guess at what a non-checkpoint file is, for the error message."""
    lowered = [key.lower() for key in keys]
    guesses: list[tuple[bool, str]] = [
        (any("lora_" in k or ".lora_down" in k or ".lora_up" in k or "lora.down" in k for k in lowered),
         "it looks like a LoRA"),
        (_has_prefix(keys, UNET_PREFIX + "joint_blocks") or _has_prefix(keys, "joint_blocks"),
         "it looks like an SD3 model, which is not supported"),
        (any("double_blocks." in k for k in keys), "it looks like a Flux model, which is not supported"),
        (any(k in ("string_to_param", "emb_params", "clip_l", "clip_g") or k.startswith("string_to_param")
             for k in keys), "it looks like a textual inversion embedding"),
        (all(k.split(".")[0] in ("encoder", "decoder", "quant_conv", "post_quant_conv", VAE_PREFIX[:-1])
             for k in keys), "it looks like a VAE alone; put it in models/VAE"),
        (_has_prefix(keys, "down_blocks.") or _has_prefix(keys, "mid_block."),
         "it looks like a single diffusers component, not a full checkpoint"),
        (_has_prefix(keys, "text_model.") or _has_prefix(keys, "transformer.resblocks."),
         "it looks like a text encoder alone"),
        (_has_prefix(keys, UNET_PREFIX), "it has a UNet but no text encoder"),
    ]
    for matched, guess in guesses:
        if matched:
            return guess
    return "the tensors match no known model layout"


def _family_of(keys: Sequence[str], label: str) -> Family:
    has_unet = UNET_INPUT_KEY in keys
    if has_unet and _has_prefix(keys, SDXL_TEXT2_PREFIX):
        if not _has_prefix(keys, SDXL_TEXT1_PREFIX):
            raise UnsupportedModel(f"{label}: an SDXL checkpoint without its CLIP-L text encoder (embedders.0).")
        return Family.SDXL
    if has_unet and _has_prefix(keys, REFINER_TEXT_PREFIX):
        return Family.SDXL_REFINER
    if has_unet and _has_prefix(keys, SD2_TEXT_PREFIX):
        return Family.SD2
    if has_unet and _has_prefix(keys, SD1_TEXT_PREFIX):
        return Family.SD1
    raise UnsupportedModel(
        f"{label}: not a {SUPPORTED} checkpoint: found {len(keys)} keys, none of the text encoder keys of "
        f"SD1/SD2/SDXL; {_guess_foreign(keys)}."
    )


def _variant_of(in_channels: int, family: Family, label: str) -> Variant:
    if in_channels == 4:
        return Variant.NORMAL
    if in_channels == 9 and family is not Family.SDXL_REFINER:
        return Variant.INPAINT
    kinds = {5: "a depth-conditioned model (depth2img)", 8: "an instruct-pix2pix model", 9: "an inpainting refiner"}
    kind = kinds.get(in_channels, f"a UNet with {in_channels} input channels")
    raise UnsupportedModel(f"{label}: {kind}, which is not supported (supported: 4-channel and 9-channel inpaint).")


def classify(source: KeySource, label: str) -> Structure:
    """Family, variant and v marker from keys and shapes; raises UnsupportedModel for anything else."""
    keys = list(source.keys())
    family = _family_of(keys, label)
    in_channels = source.shape(UNET_INPUT_KEY)[1]
    return Structure(family, _variant_of(in_channels, family, label), V_PRED_KEY in keys)


def embedded_prediction(metadata: Mapping[str, str], path: Path) -> Prediction | None:
    """Prediction type from the configs that `convert.save_single_file` embeds in safetensors metadata (or, for
    a `.ckpt`, writes to `<stem>.configs.json` beside it); None when there are none or they are unreadable."""
    try:
        value = (embedded_configs(path, metadata) or {})["scheduler"]["prediction_type"]
    except (CorruptFile, KeyError, TypeError):
        return None
    return Prediction.V if value == Prediction.V.value else Prediction.EPSILON


def sidecar_prediction(path: Path) -> Prediction | None:
    """A1111's per-model config `<stem>.yaml` next to the file: `parameterization: "v"` means v-prediction."""
    sidecar = path.with_suffix(".yaml")
    if not sidecar.is_file():
        return None
    try:
        config = yaml.safe_load(sidecar.read_text(encoding="utf8")) or {}
        params = config.get("model", {}).get("params", {}) or {}
    except (yaml.YAMLError, AttributeError, OSError) as exc:
        log.warning("Ignoring unreadable model config %s: %s", sidecar, exc)
        return None
    return Prediction.V if params.get("parameterization") == "v" else Prediction.EPSILON


def identify(source: KeySource, path: Path, v_test: VTest | None = None) -> ModelIdentity:
    """Identity of a single-file checkpoint whose keys `source` lists (see the module doc for the rules)."""
    structure = classify(source, str(path))
    prediction = Prediction.V if structure.v_marker else None
    prediction = prediction or embedded_prediction(source.metadata(), path) or sidecar_prediction(path)
    if prediction is None and structure.family is Family.SD2 and structure.variant is Variant.NORMAL:
        run = v_test or sd2_runtime_v_test
        log.info("%s: SD2 checkpoint without a prediction marker; running A1111's v-prediction test", path)
        prediction = Prediction.V if run(path) else Prediction.EPSILON
    return ModelIdentity(structure.family, structure.variant, prediction or Prediction.EPSILON)


def sd2_unet_config() -> dict[str, Any]:
    """The SD2 UNet architecture A1111's runtime test builds: the bundled diffusers config of the sd2 family."""
    config = read_json_object(family_config_dir("sd2") / "unet" / "config.json")
    return {key: value for key, value in config.items() if not key.startswith("_")}


def unet_from_ldm_state(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> UNet2DConditionModel:
    """A diffusers UNet (fp32, CPU) from the `model.diffusion_model.*` tensors of an original checkpoint."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint  # diffusers' own key mapping

    converted = convert_ldm_unet_checkpoint(dict(state), dict(config))
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
    unet.load_state_dict({k: v.float() for k, v in converted.items()}, strict=True, assign=True)
    return unet.eval()


@torch.no_grad()
def predicts_v(unet: UNet2DConditionModel) -> bool:
    """A1111's criterion: on constant input 0.5 at t=999, a v-model's output minus input averages below -1."""
    x = torch.full((1, 4, 8, 8), 0.5)
    cond = torch.full((1, 2, int(unet.config.cross_attention_dim)), 0.5)
    out = unet(x, torch.tensor([999]), encoder_hidden_states=cond).sample
    return bool((out - x).mean().item() < -1)


def _unet_tensors(path: Path) -> dict[str, torch.Tensor]:
    return read_state_dict(path, prefix=UNET_PREFIX)


def sd2_runtime_v_test(path: Path, unet_config: Mapping[str, Any] | None = None) -> bool:
    """A1111's `is_using_v_parameterization_for_sd2`, on a diffusers UNet built from the file on the CPU.

    Costs one full-size UNet in fp32 RAM (~3.5 GB) and one tiny forward pass; it runs only for SD2 files that
    carry no prediction marker, once per probe (records keep the identity). `unet_config` defaults to the
    real SD2 architecture; tests pass the tiny one.
    """
    unet = unet_from_ldm_state(_unet_tensors(path), unet_config or sd2_unet_config())
    result = predicts_v(unet)
    del unet
    return result


def _component_present(index: Mapping[str, Any], name: str) -> bool:
    entry = index.get(name)
    return isinstance(entry, list) and len(entry) == 2 and entry[0] is not None and entry[1] is not None


def _folder_family(folder: Path, index: Mapping[str, Any], unet: Mapping[str, Any]) -> Family:
    has_te1 = _component_present(index, "text_encoder")
    has_te2 = _component_present(index, "text_encoder_2")
    pipeline = str(index.get("_class_name", ""))
    if not pipeline.startswith("StableDiffusion") or not (has_te1 or has_te2):
        raise UnsupportedModel(f"{folder}: a diffusers {pipeline or 'folder'}, not a {SUPPORTED} pipeline.")
    if has_te2:
        return Family.SDXL if has_te1 else Family.SDXL_REFINER
    te_config = read_json_object(folder / "text_encoder" / "config.json")
    if te_config.get("hidden_act") == "gelu" or unet.get("cross_attention_dim") == 1024:
        return Family.SD2
    return Family.SD1


def identify_diffusers_folder(folder: Path) -> ModelIdentity:
    """Identity of a diffusers pipeline folder from model_index.json and the unet/scheduler configs."""
    index = read_json_object(folder / "model_index.json")
    unet = read_json_object(folder / "unet" / "config.json")
    family = _folder_family(folder, index, unet)
    variant = _variant_of(int(unet.get("in_channels", 4)), family, str(folder))
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    scheduler = read_json_object(scheduler_file) if scheduler_file.is_file() else {}
    prediction = Prediction.V if scheduler.get("prediction_type") == Prediction.V.value else Prediction.EPSILON
    return ModelIdentity(family, variant, prediction)


def probe(path: str | Path, *, v_test: VTest | None = None) -> ModelIdentity:
    """Identify a checkpoint file or diffusers folder; raises UnsupportedModel/UnsafeCheckpoint/CorruptFile."""
    path = Path(path)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise UnsupportedModel(f"{path}: a folder without model_index.json is not a diffusers pipeline.")
        identity = identify_diffusers_folder(path)
    else:
        identity = identify(StrippedKeys.from_file(path), path, v_test)
    log.debug("%s: %s", path, identity.describe())
    return identity
