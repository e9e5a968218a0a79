"""A1111's Tiling (`modules.core.seamless`): with circular padding the UNet and the VAE treat the latent as a torus
(shifting the input shifts the output the same way, to float rounding), which is what makes a picture tile; the
padding comes back afterwards; a job with the setting says so in its result."""

from __future__ import annotations

import pytest
import torch

from modules.core.generate import generate
from modules.core.plan import CoreOptions
from modules.core.seamless import circular_padding
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest
from tests.core.helpers import SD1, SDXL, tiny

EULER = default_registry().resolve("Euler")


def _modes(module: torch.nn.Module) -> set[str]:
    """The padding modes of the convolutions that pad (1x1 convolutions have nothing to pad)."""
    return {layer.padding_mode for layer in module.modules()
            if isinstance(layer, torch.nn.Conv2d) and layer.padding != (0, 0)}


def _shift_error(fn, x: torch.Tensor, shift: int, scale: int) -> float:  # type: ignore[no-untyped-def]
    """How far fn(roll(x)) is from roll(fn(x)) (0 for a network that is equivariant to that shift)."""
    rolled_in = fn(torch.roll(x, shifts=(shift, 2 * shift), dims=(2, 3)))
    rolled_out = torch.roll(fn(x), shifts=(shift * scale, 2 * shift * scale), dims=(2, 3))
    return float((rolled_in - rolled_out).abs().max())


@pytest.mark.parametrize("identity", [SD1, SDXL])
def test_unet_and_vae_become_shift_equivariant_and_are_restored(identity) -> None:  # type: ignore[no-untyped-def]
    components = tiny(identity)
    unet, vae = components.unet, components.vae
    generator = torch.Generator().manual_seed(0)
    latent = torch.randn(1, unet.config.in_channels, 16, 16, generator=generator)
    shift = 2 ** (len(unet.config.block_out_channels) - 1)  # the UNet's total downsampling
    scale = 2 ** (len(vae.config.block_out_channels) - 1)  # the VAE's upsampling
    context = torch.randn(1, 4, unet.config.cross_attention_dim, generator=generator)
    extra = {}
    if identity is SDXL:
        extra = {"added_cond_kwargs": {"text_embeds": torch.randn(1, unet.config.projection_class_embeddings_input_dim
                                                                  - 6 * unet.config.addition_time_embed_dim),
                                       "time_ids": torch.zeros(1, 6)}}

    def unet_call(x: torch.Tensor) -> torch.Tensor:
        return unet(x, 500, encoder_hidden_states=context, **extra).sample

    def decode(x: torch.Tensor) -> torch.Tensor:
        return vae.decode(x[:, :4]).sample

    with torch.inference_mode():
        plain = (_shift_error(unet_call, latent, shift, 1), _shift_error(decode, latent, shift, scale))
        with circular_padding([unet, vae]):
            assert _modes(unet) == {"circular"} and _modes(vae) == {"circular"}
            tiled = (_shift_error(unet_call, latent, shift, 1), _shift_error(decode, latent, shift, scale))
    assert tiled[0] < 1e-4 and tiled[1] < 1e-4, tiled
    assert plain[0] > 1e-3 and plain[1] > 1e-3, plain  # zero padding: the borders break it
    assert _modes(unet) == {"zeros"} and _modes(vae) == {"zeros"}


def test_padding_comes_back_after_an_error() -> None:
    components = tiny(SD1)
    with pytest.raises(RuntimeError, match="boom"), circular_padding([components.unet, None]):
        raise RuntimeError("boom")
    assert _modes(components.unet) == {"zeros"}
    with circular_padding([components.unet], enabled=False):
        assert _modes(components.unet) == {"zeros"}


def test_a_job_with_tiling_differs_and_leaves_the_model_as_it_was() -> None:
    components = tiny(SD1)
    request = GenerationRequest(prompt="a tile", seed=3, steps=2, width=64, height=64, sampler="Euler", cfg_scale=5)
    plain = generate(request, components, EULER).images[0]
    tiled = generate(request, components, EULER, options=CoreOptions(tiling=True)).images[0]
    again = generate(request.with_changes(overrides={"tiling": True}), components, EULER).images[0]
    assert plain.tobytes() != tiled.tobytes() and tiled.tobytes() == again.tobytes()
    assert _modes(components.unet) == {"zeros"} and _modes(components.vae) == {"zeros"}
    assert generate(request, components, EULER).images[0].tobytes() == plain.tobytes()
