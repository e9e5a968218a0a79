"""Generation helpers for extension tests: tiny-model generations through the core with a host's hooks."""

from __future__ import annotations

import base64
import io
import sys
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any, Iterator

import httpx
import numpy as np
from PIL import Image

from modules import infotext
from modules.core.generate import generate
from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
from modules.extensions.loader import ExtensionRoot
from modules.models.components import ComponentSet
from modules.models.identity import Family, ModelIdentity
from modules.models.tiny import build_tiny_components
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest, GenerationResult
from tests.api.api_helpers import LiveServer

if TYPE_CHECKING:
    from modules.app import App

REGISTRY = default_registry()
_TINY: dict[str, ComponentSet] = {}


def tiny_sd1() -> ComponentSet:
    if "sd1" not in _TINY:
        _TINY["sd1"] = build_tiny_components(ModelIdentity(Family.SD1), seed=0)
    return _TINY["sd1"]


def small_request(**fields: Any) -> GenerationRequest:
    values: dict[str, Any] = {"prompt": "a red cube", "negative_prompt": "blurry", "seed": 3, "steps": 2,
                              "width": 64, "height": 64, "cfg_scale": 6.0, "sampler": "Euler"}
    values.update(fields)
    return GenerationRequest(**values)


def run_with_host(host: ExtensionHost, request: GenerationRequest) -> GenerationResult:
    """What modules.processing does with a host, minus models/settings/saving: hooks around the core."""
    request = host.hooks.before_job(request, {})
    sampler = REGISTRY.resolve(request.sampler, request.schedule)
    output = generate(request, tiny_sd1(), sampler, hooks=host.hooks.step_hooks(request),
                      unet_hooks=host.hooks.unet_hooks(request))
    texts = tuple(
        infotext.build(prompt, negative, {"Steps": request.steps, "Sampler": sampler.label,
                                          "CFG scale": request.cfg_scale, "Seed": seed})
        for prompt, negative, seed in zip(output.prompts, output.negative_prompts, output.seeds))
    images, texts = host.hooks.after_images(request, output.images, texts, output.seeds, {})
    return GenerationResult(images, output.seeds, output.subseeds, output.prompts, output.negative_prompts, texts,
                            request, interrupted=output.interrupted)


def tiny_controlnet(unet: Any) -> Any:
    """A ControlNet made from a (tiny) UNet, its zero convolutions made non-zero so it changes the picture."""
    import torch
    from diffusers import ControlNetModel

    net = ControlNetModel.from_unet(unet)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]:
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.3)
    return net.eval()


def controlnet_module(name: str) -> ModuleType:
    """A module of the built-in ControlNet extension (`cnlib.preprocessors`, `scripts.controlnet`, ...), loaded once."""
    key = f"sdwebui_extensions.controlnet.{name}"
    if key not in sys.modules:
        ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)]).load()
    return sys.modules[key]


def noise_picture(width: int, height: int, seed: int = 0) -> Image.Image:
    """A picture of uniform random RGB noise."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_b64(picture: Image.Image) -> str:
    """`picture` as the base64 PNG an API body carries."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def b64_pixels(data: str) -> np.ndarray:
    """The RGB pixels of a base64 picture from an API answer."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


@contextmanager
def served_app(app: "App") -> Iterator[httpx.Client]:
    """A client of `app`'s API over real HTTP, extension routes included (mounted as webui.build_server mounts them,
    so the extensions learn the data folder); the app is closed afterwards."""
    from fastapi import FastAPI

    from modules.api.mount import mount_api

    server = FastAPI()
    mount_api(server, app)
    app.extensions.hooks.app_started(server)
    live = LiveServer(server).start()
    client = httpx.Client(base_url=live.url, timeout=300)
    try:
        yield client
    finally:
        client.close()
        live.stop()
        app.close()
