"""bench/gpu_check.py on tiny models on the CPU: every check of the GPU acceptance run passes, so the script is
ready the day a GPU is lent (its full-size run is for CUDA machines)."""

from __future__ import annotations

import pytest

from bench import gpu_check


@pytest.mark.slow
def test_gpu_check_runs_on_tiny_models(capsys) -> None:
    assert gpu_check.main(["--tiny"]) == 0
    out = capsys.readouterr().out
    assert "ALL PASS" in out and "FAIL" not in out.replace("SOME FAILED", "")
    for check in ("it/s", "fp16 vs fp32", "NaN VAE fallback", "injected OOM", "--medvram", "--lowvram",
                  "10 checkpoint switches"):
        assert check in out
