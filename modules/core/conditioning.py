"""Text conditioning of plain prompts, equal to diffusers' `encode_prompt` (one 77-token window per prompt).

`encode_prompts` is the single entry point: the A1111 prompt syntax (weights, 75-token chunks, editing) will
replace its body later without changing its callers.

- SD1/SD2: last hidden state of the CLIP text model. Clip skip N > 1 takes `hidden_states[-N]` and applies the
  final layer norm, as A1111 does (A1111 "Clip skip 2" == diffusers `clip_skip=1`; diffusers 0.42's own clip_skip
  path reaches for `text_encoder.text_model`, which transformers 5's CLIPTextModel no longer has). A1111 ignores
  clip skip for SD2 (OpenCLIP, already penultimate); here it applies to SD2 as diffusers applies it.
- SDXL: penultimate hidden states of both encoders concatenated, the pooled `text_embeds` of the second encoder.
  A1111 ignores clip skip for SDXL unless the `sdxl_clip_l_skip` option is on, which applies `hidden_states[-N]`
  to CLIP-L only (diffusers' `clip_skip` moves both encoders; not followed). The refiner has only the second
  encoder.
- Empty negative prompt on SDXL: A1111 (like diffusers' `force_zeros_for_empty_prompt`) uses all-zero embeddings
  and pooled vector instead of encoding "". diffusers does so only when `negative_prompt` is None and, for the
  refiner, not at all (its config turns the flag off); A1111's rule is used for both here.
- SDXL micro-conditioning (`time_ids`): original size, crop top/left, target size for the base model; original
  size, crop and aesthetic score (6.0 for the prompt, 2.5 for the negative) for the refiner.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import CLIPTokenizer, PreTrainedModel

from modules.core.plan import CoreOptions
from modules.errors import InvalidRequest
from modules.models.components import ComponentSet
from modules.models.identity import Family, ModelIdentity


@dataclass(frozen=True)
class Conditioning:
    """Per-image text embeddings of one batch (B rows); pooled vectors only for SDXL-family models."""

    cond: torch.Tensor
    uncond: torch.Tensor
    pooled: torch.Tensor | None = None
    uncond_pooled: torch.Tensor | None = None


def _token_ids(tokenizer: CLIPTokenizer, text: str, device: torch.device) -> torch.Tensor:
    tokens = tokenizer(
        text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    return tokens.input_ids.to(device)


def _check_clip_skip(encoder: PreTrainedModel, clip_skip: int) -> None:
    layers = encoder.config.num_hidden_layers
    if clip_skip > layers:
        raise InvalidRequest(f"clip_skip must be at most {layers} for this model's text encoder, got {clip_skip}")


def _encode_sd(components: ComponentSet, text: str, clip_skip: int) -> tuple[torch.Tensor, None]:
    encoder, tokenizer = components.text_encoders[0], components.tokenizers[0]
    ids = _token_ids(tokenizer, text, encoder.device)
    if clip_skip <= 1:
        return encoder(ids)[0], None
    hidden = encoder(ids, output_hidden_states=True).hidden_states[-clip_skip]
    return encoder.final_layer_norm(hidden), None  # transformers 5: no `text_model` wrapper


def _encode_sdxl(
    components: ComponentSet, text: str, clip_skip: int, clip_l_skip: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    has_clip_l = components.identity.family is Family.SDXL
    states = []
    pooled = None
    for index, (encoder, tokenizer) in enumerate(zip(components.text_encoders, components.tokenizers, strict=True)):
        output = encoder(_token_ids(tokenizer, text, encoder.device), output_hidden_states=True)
        is_clip_l = has_clip_l and index == 0
        layer = -clip_skip if is_clip_l and clip_l_skip else -2
        states.append(output.hidden_states[layer])
        if index == len(components.text_encoders) - 1:
            pooled = output.text_embeds
    assert pooled is not None
    return torch.cat(states, dim=-1), pooled


def _encode_texts(
    components: ComponentSet, texts: list[str], clip_skip: int, clip_l_skip: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Encode each distinct text once (alone, so the result does not depend on the batch) and stack per row."""
    cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for text in dict.fromkeys(texts):
        if components.identity.is_sdxl:
            cache[text] = _encode_sdxl(components, text, clip_skip, clip_l_skip)
        else:
            cache[text] = _encode_sd(components, text, clip_skip)
    embeds = torch.cat([cache[text][0] for text in texts])
    pooled_rows = [cache[text][1] for text in texts]
    pooled = torch.cat(pooled_rows) if pooled_rows[0] is not None else None  # type: ignore[arg-type]
    return embeds, pooled


def encode_prompts(
    components: ComponentSet,
    prompts: list[str],
    negative_prompts: list[str],
    clip_skip: int,
    *,
    sdxl_clip_l_skip: bool = False,
) -> Conditioning:
    """Embeddings of `prompts` and `negative_prompts` (one per image) with the model's text encoders."""
    clip_l_skip = sdxl_clip_l_skip and components.identity.family is Family.SDXL
    if not components.identity.is_sdxl or clip_l_skip:
        _check_clip_skip(components.text_encoders[0], clip_skip)
    cond, pooled = _encode_texts(components, prompts, clip_skip, clip_l_skip)
    if components.identity.is_sdxl and all(text == "" for text in negative_prompts):
        assert pooled is not None
        return Conditioning(cond, torch.zeros_like(cond), pooled, torch.zeros_like(pooled))
    uncond, uncond_pooled = _encode_texts(components, negative_prompts, clip_skip, clip_l_skip)
    return Conditioning(cond, uncond, pooled, uncond_pooled)


def sdxl_time_ids(
    identity: ModelIdentity, width: int, height: int, options: CoreOptions, negative: bool
) -> list[float]:
    """SDXL micro-conditioning of one image (A1111 `sd_models_xl.get_learned_conditioning` values)."""
    crop = [float(options.sdxl_crop_top), float(options.sdxl_crop_left)]
    if identity.family is Family.SDXL_REFINER:
        score = options.sdxl_refiner_low_aesthetic_score if negative else options.sdxl_refiner_high_aesthetic_score
        return [float(height), float(width), *crop, float(score)]
    return [float(height), float(width), *crop, float(height), float(width)]


def sdxl_added_cond(
    identity: ModelIdentity,
    conditioning: Conditioning,
    width: int,
    height: int,
    options: CoreOptions,
    guided: bool,
) -> dict[str, torch.Tensor]:
    """UNet `added_cond_kwargs` (text_embeds, time_ids); rows ordered [uncond x B, cond x B] when `guided`."""
    assert conditioning.pooled is not None and conditioning.uncond_pooled is not None
    batch = conditioning.cond.shape[0]
    dtype, device = conditioning.cond.dtype, conditioning.cond.device
    ids = torch.tensor([sdxl_time_ids(identity, width, height, options, False)], dtype=dtype, device=device)
    if not guided:
        return {"text_embeds": conditioning.pooled, "time_ids": ids.repeat(batch, 1)}
    neg = torch.tensor([sdxl_time_ids(identity, width, height, options, True)], dtype=dtype, device=device)
    return {
        "text_embeds": torch.cat([conditioning.uncond_pooled, conditioning.pooled]),
        "time_ids": torch.cat([neg.repeat(batch, 1), ids.repeat(batch, 1)]),
    }
