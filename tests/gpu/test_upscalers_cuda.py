"""Upscaler model files on a CUDA device (skipped where there is none): loaded in half precision where the
architecture allows it, and the picture agrees with the CPU's float32 result."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules.upscalers.model_files import load_model, run_model
from tests.upscalers.helpers import save_compact

pytestmark = pytest.mark.gpu


def test_half_precision_on_cuda_agrees_with_the_cpu(tmp_path):
    path = save_compact(tmp_path / "ESRGAN" / "2x-tiny.pth", scale=2)
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8))
    on_gpu = load_model(path, torch.device("cuda"), torch.float16)
    assert on_gpu.dtype == torch.float16 and on_gpu.device.type == "cuda"
    gpu = np.asarray(run_model(on_gpu, picture, 16, 8), dtype=np.float32)
    cpu = np.asarray(run_model(load_model(path, torch.device("cpu"), torch.float16), picture, 16, 8),
                     dtype=np.float32)
    assert load_model(path, torch.device("cpu"), torch.float16).dtype == torch.float32  # no half on a CPU
    assert gpu.shape == cpu.shape == (96, 80, 3)
    assert np.abs(gpu - cpu).mean() < 2.0
