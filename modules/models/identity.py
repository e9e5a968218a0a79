"""What a checkpoint is: family, variant and prediction type, and the bundled config folder that describes it."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Family(str, enum.Enum):
    SD1 = "sd1"
    SD2 = "sd2"
    SDXL = "sdxl"
    SDXL_REFINER = "sdxl_refiner"


class Variant(str, enum.Enum):
    NORMAL = "normal"
    INPAINT = "inpaint"


class Prediction(str, enum.Enum):
    EPSILON = "epsilon"
    V = "v_prediction"


@dataclass(frozen=True)
class ModelIdentity:
    """The family/variant/prediction triple that selects loaders and bundled configs."""

    family: Family
    variant: Variant = Variant.NORMAL
    prediction: Prediction = Prediction.EPSILON

    @property
    def config_name(self) -> str:
        """Name of the folder under `models/configs/` holding this identity's diffusers configs.

        sd1, sd1-inpaint, sd2, sd2-v, sd2-inpaint, sdxl, sdxl-inpaint, sdxl_refiner. The prediction type is
        applied on top of the scheduler config, so only SD2 768-v (whose UNet config is the same as sd2's but
        whose default size is 768) has its own folder.
        """
        name = self.family.value
        if self.variant is Variant.INPAINT:
            return f"{name}-inpaint"
        if self.family is Family.SD2 and self.prediction is Prediction.V:
            return "sd2-v"
        return name

    @property
    def is_sdxl(self) -> bool:
        return self.family in (Family.SDXL, Family.SDXL_REFINER)

    @property
    def default_size(self) -> int:
        """Native resolution: 512 for SD1/SD2-base, 768 for SD2-v, 1024 for SDXL."""
        if self.is_sdxl:
            return 1024
        if self.family is Family.SD2 and self.prediction is Prediction.V:
            return 768
        return 512

    def describe(self) -> str:
        """Human-readable label, e.g. 'SD 2.x (v-prediction)' or 'SDXL inpaint'."""
        base = {Family.SD1: "SD 1.x", Family.SD2: "SD 2.x", Family.SDXL: "SDXL", Family.SDXL_REFINER: "SDXL refiner"}
        text = base[self.family]
        if self.variant is Variant.INPAINT:
            text += " inpaint"
        if self.prediction is Prediction.V:
            text += " (v-prediction)"
        return text
