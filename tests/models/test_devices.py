"""Device and dtype choice from launch flags (pure functions of the flags and the torch capabilities)."""

from __future__ import annotations

import pytest
import torch

from modules.devices import Capabilities, choose_device, choose_dtypes, memory_stats, plan_devices
from modules.errors import UserError

CPU_ONLY = Capabilities(cuda=False, mps=False)
CUDA = Capabilities(cuda=True, mps=False, cuda_count=2)
MPS = Capabilities(cuda=False, mps=True)


def test_automatic_device_prefers_cuda_then_mps_then_cpu() -> None:
    assert choose_device(None, CUDA) == torch.device("cuda")
    assert choose_device(None, MPS) == torch.device("mps")
    assert choose_device(None, CPU_ONLY) == torch.device("cpu")


def test_device_override() -> None:
    assert choose_device("cpu", CUDA) == torch.device("cpu")
    assert choose_device("cuda:1", CUDA) == torch.device("cuda:1")
    for bad, caps in (("cuda", CPU_ONLY), ("cuda:2", CUDA), ("mps", CPU_ONLY), ("gpu0", CUDA), ("xpu", CUDA)):
        with pytest.raises(UserError, match="--device"):
            choose_device(bad, caps)


@pytest.mark.parametrize(
    ("device", "flags", "expected"),
    [
        ("cuda", {}, (torch.float16, torch.float16)),
        ("cuda", {"no_half_vae": True}, (torch.float16, torch.float32)),
        ("cuda", {"no_half": True}, (torch.float32, torch.float32)),
        ("cuda", {"precision": "full"}, (torch.float32, torch.float32)),
        ("cuda", {"precision": "half"}, (torch.float16, torch.float16)),
        ("mps", {}, (torch.float16, torch.float16)),
        ("mps", {"no_half": True}, (torch.float32, torch.float32)),
        ("cpu", {}, (torch.float32, torch.float32)),
        ("cpu", {"precision": "half"}, (torch.float32, torch.float32)),
    ],
)
def test_dtypes(device: str, flags: dict, expected: tuple[torch.dtype, torch.dtype]) -> None:
    assert choose_dtypes(torch.device(device), **flags) == expected


def test_plan_and_autocast() -> None:
    plan = plan_devices(None, "autocast", caps=CUDA)
    assert (plan.device, plan.dtype, plan.autocast) == (torch.device("cuda"), torch.float16, True)
    assert plan_devices(None, "half", caps=CUDA).autocast is False
    cpu = plan_devices(None, caps=CPU_ONLY)
    assert (cpu.dtype, cpu.vae_dtype, cpu.autocast) == (torch.float32, torch.float32, False)
    assert cpu.describe() == "cpu float32"
    with pytest.raises(UserError, match="precision"):
        plan_devices(None, "double", caps=CPU_ONLY)


def test_memory_stats_layout() -> None:
    stats = memory_stats(torch.device("cpu"))
    assert set(stats["ram"]) == {"free", "used", "total"} and stats["ram"]["total"] > 0
    assert "error" in stats["cuda"]
