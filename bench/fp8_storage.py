"""What FP8 weight storage (`fp8_storage`) saves: the UNet's stored bytes in fp16 and with fp8 storage, for the
real SD 1.x and SDXL architectures (bundled configs; counted on the meta device, so nothing is allocated), and the
resident memory of a real SD 1.x UNet (random weights, fp32 compute on the CPU) before and after.

    .venv/bin/python bench/fp8_storage.py [--no-measure]
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffusers import UNet2DConditionModel  # noqa: E402

from modules.models.configs import bundled_configs  # noqa: E402
from modules.models.identity import Family, ModelIdentity  # noqa: E402
from modules.models.weight_storage import parameter_bytes  # noqa: E402

GiB = 2**30


def stored_bytes(family: Family) -> tuple[int, int]:
    """(fp16 bytes, fp8-storage bytes) of the family's UNet."""
    config = bundled_configs(ModelIdentity(family))["unet"]
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config).to(torch.float16)
    half = parameter_bytes(unet)
    unet.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float16)
    return half, parameter_bytes(unet)


def measured_sd1() -> tuple[int, int]:
    """Resident memory of a real SD 1.x UNet in fp32, then after fp8 storage."""
    process = psutil.Process()
    base = process.memory_info().rss
    unet = UNet2DConditionModel.from_config(bundled_configs(ModelIdentity(Family.SD1))["unet"]).eval()
    gc.collect()
    full = process.memory_info().rss - base
    unet.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    gc.collect()
    return full, process.memory_info().rss - base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-measure", action="store_true", help="only count bytes (no real UNet)")
    args = parser.parse_args()
    for family in (Family.SD1, Family.SDXL):
        half, fp8 = stored_bytes(family)
        print(f"{family.value:5s} UNet weights: fp16 {half / GiB:.2f} GiB, fp8 storage {fp8 / GiB:.2f} GiB "
              f"({(1 - fp8 / half) * 100:.0f} % less)")
    if not args.no_measure:
        full, fp8 = measured_sd1()
        print(f"sd1 UNet resident (fp32 compute, CPU): {full / GiB:.2f} GiB -> {fp8 / GiB:.2f} GiB with fp8 storage")


if __name__ == "__main__":
    main()
