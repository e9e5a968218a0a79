"""The GPU acceptance checks of bench/gpu_check.py on a CUDA device with tiny models (skipped without CUDA): fp16
speed and peak memory, fp16 vs fp32, the NaN VAE fallback, OOM recovery, offload peaks, switches."""

from __future__ import annotations

import pytest

from bench import gpu_check

pytestmark = pytest.mark.gpu


def test_gpu_check_passes_on_cuda_with_tiny_models(capsys) -> None:
    assert gpu_check.main(["--tiny", "--device", "cuda"]) == 0, capsys.readouterr().out
