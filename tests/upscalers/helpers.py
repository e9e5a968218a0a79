"""Tiny upscaler model files made in the test, saved in the layouts real downloads use."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN


def compact_net(scale: int = 2, seed: int = 0) -> Compact:
    """A Real-ESRGAN-compact network (SRVGGNetCompact) with 8 features and 2 body convolutions: receptive field
    radius 4 input pixels."""
    torch.manual_seed(seed)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=scale, act_type="prelu")
    for parameter in net.parameters():  # random but not tiny, so the network visibly changes the picture
        torch.nn.init.normal_(parameter, std=0.2)
    return net.eval()


def save_compact(path: Path, scale: int = 2, seed: int = 0) -> Path:
    """`path` (.pth: Real-ESRGAN's {"params": state_dict}; .safetensors: the bare state dict)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.contiguous() for key, value in compact_net(scale, seed).state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"params": state}, path)
    return path


def save_esrgan(path: Path, scale: int = 4) -> Path:
    """A tiny ESRGAN (RRDBNet: 8 filters, 1 block) as a plain state dict, as old ESRGAN .pth files are."""
    torch.manual_seed(1)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path
