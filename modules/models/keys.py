"""Names that model files share with other programs: state-dict key prefixes, marker keys and metadata keys.

Every module that reads or writes an original (LDM / A1111) checkpoint, a LoRA or a ControlNet file takes these
strings from here, so a prefix is spelled once. `TEXT_ENCODER_LAYOUTS` says where each family's text encoders live
in an original checkpoint. This module depends on nothing but `identity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from modules.models.identity import Family, ModelIdentity

# ---------------------------------------------------------------- original (LDM / SGM) checkpoint keys
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_TEXT_PREFIX = "cond_stage_model.transformer."
SD2_TEXT_PREFIX = "cond_stage_model.model."
SDXL_TEXT1_PREFIX = "conditioner.embedders.0.transformer."
SDXL_TEXT2_PREFIX = "conditioner.embedders.1.model."
REFINER_TEXT_PREFIX = "conditioner.embedders.0.model."
CONTROL_PREFIX = "control_model."
UNET_INPUT_KEY = UNET_PREFIX + "input_blocks.0.0.weight"
V_PRED_KEY = "v_pred"  # an empty tensor that marks a v-prediction checkpoint

# ---------------------------------------------------------------- safetensors metadata and sidecar files
CONFIGS_METADATA_KEY = "sdwebui.configs"  # our component configs, JSON, written by convert.save_single_file
CONFIGS_SIDECAR_SUFFIX = ".configs.json"  # the same configs beside a `.ckpt`: `<stem>.configs.json`
RESOLUTION_METADATA_KEY = "modelspec.resolution"  # Stability's ModelSpec "WxH"

# ---------------------------------------------------------------- LoRA layer names
LORA_UNET_PREFIX = "lora_unet_"
LORA_TE_PREFIX = "lora_te_"  # SD1/SD2's one text encoder
LORA_TE1_PREFIX = "lora_te1_"  # SDXL's CLIP-L
LORA_TE2_PREFIX = "lora_te2_"  # SDXL's OpenCLIP (and the refiner's only encoder)
PEFT_UNET_PREFIX = "unet."  # diffusers / PEFT: "unet.<module path>", "text_encoder.<...>", "text_encoder_2.<...>"


@dataclass(frozen=True)
class TextEncoderLayout:
    """Where one text encoder lives in an original checkpoint, and which bundled tokenizer goes with it."""

    component: str  # diffusers folder name: "text_encoder" | "text_encoder_2"
    kind: str  # "clip_l" (HF CLIP layout) | "openclip" (OpenCLIP layout)
    prefix: str  # key prefix in the original file
    tokenizer: str  # bundled tokenizer folder name (modules.paths.tokenizer_dir)


TEXT_ENCODER_LAYOUTS: Mapping[Family, tuple[TextEncoderLayout, ...]] = {
    Family.SD1: (TextEncoderLayout("text_encoder", "clip_l", SD1_TEXT_PREFIX, "clip_l"),),
    Family.SD2: (TextEncoderLayout("text_encoder", "openclip", SD2_TEXT_PREFIX, "openclip"),),
    Family.SDXL: (
        TextEncoderLayout("text_encoder", "clip_l", SDXL_TEXT1_PREFIX, "clip_l"),
        TextEncoderLayout("text_encoder_2", "openclip", SDXL_TEXT2_PREFIX, "openclip"),
    ),
    Family.SDXL_REFINER: (TextEncoderLayout("text_encoder_2", "openclip", REFINER_TEXT_PREFIX, "openclip"),),
}


def text_encoder_layouts(identity: ModelIdentity) -> tuple[TextEncoderLayout, ...]:
    """Text encoder layouts of a family, in ComponentSet order."""
    return TEXT_ENCODER_LAYOUTS[identity.family]


# kohya prefixes of each text encoder, in ComponentSet order (the diffusers prefix is the layout's component name)
LORA_TEXT_PREFIXES: Mapping[Family, tuple[str, ...]] = {
    Family.SD1: (LORA_TE_PREFIX,),
    Family.SD2: (LORA_TE_PREFIX,),
    Family.SDXL: (LORA_TE1_PREFIX, LORA_TE2_PREFIX),
    Family.SDXL_REFINER: (LORA_TE2_PREFIX,),
}
