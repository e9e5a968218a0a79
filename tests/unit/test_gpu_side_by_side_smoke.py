"""bench/gpu_side_by_side.py on tiny models on the CPU: every variant runs and reports, and ours paints what
diffusers' pipeline paints from the same modules (so the script is ready the day a GPU is lent)."""

from __future__ import annotations

import re

import pytest

from bench import gpu_side_by_side


@pytest.mark.slow
def test_every_variant_runs_on_tiny_models(capsys) -> None:
    assert gpu_side_by_side.main(["--tiny", "--backend", "eager", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    for model in ("SD 1.x 64x64", "SDXL 64x64"):
        assert model in out
    rows: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.startswith("| ") and "---" not in line and not line.startswith("| variant"):
            rows.setdefault(line.split("|")[1].strip(), []).append(line)
    assert {name: len(lines) for name, lines in rows.items()} == {name: 2 for name in gpu_side_by_side.VARIANTS}
    for variant in ("ours", "ours+fast", "diffusers+fast"):  # fp32 on the CPU: the same picture, within rounding
        for line in rows[variant]:  # (ours truncates to 8 bits as A1111 does, diffusers rounds: ~0.5 on average)
            difference = re.search(r"\| ([0-9.]+) levels \|$", line)
            assert difference is not None and float(difference.group(1)) < 0.6, line

def test_unknown_names_and_a_missing_gpu_are_clear(capsys) -> None:
    assert gpu_side_by_side.main(["--tiny", "--variants", "ours,warp"]) == 2
    assert "Unknown variant or model: warp" in capsys.readouterr().out
    if not gpu_side_by_side.torch.cuda.is_available():
        assert gpu_side_by_side.main([]) == 2
        assert "run with --tiny" in capsys.readouterr().out
