"""Text conditioning of a batch: A1111 prompts (weights, 75-token chunks, editing, AND) -> per-step embeddings.

`encode_prompts` is the one entry point: it strips `<lora:...>` tags from the positive prompts, plans the per-step
texts with the prompt parser (`[from:to:when]`, `[a|b]`, `AND`), encodes each distinct text once with
`PromptEncoder` and returns a `ConditioningSchedule`; `at_step(i)` is the conditioning of UNet evaluation i.
Rules: schedules are planned over A1111's `total_steps` (model calls, twice per step for second-order samplers),
counted from the first step that runs; prompts of one batch with different chunk counts repeat their last vector
(A1111 `reconstruct_multicond_batch`); prompt and negative of different lengths run as separate UNet calls unless
`pad_cond_uncond`; SDXL takes both encoders' penultimate states and time_ids (size/crop, aesthetic score for the
refiner), and an empty SDXL negative is all zeros. A prompt of at most 75 plain tokens equals diffusers'
`encode_prompt`. Clip skip and the other differences from A1111 are in docs/compat.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from modules.core.plan import CoreOptions
from modules.models.identity import Family, ModelIdentity
from modules.prompts.encode import EncodedText, PromptEncoder
from modules.prompts.parser import (
    ExtraNetworkRef,
    ScheduledPrompt,
    ScheduleParser,
    build_conditioning,
    extract_extra_networks_batch,
    select_scheduled,
    shared_parser,
)

PartRows = tuple[tuple[tuple[int, float], ...], ...]
"""Per image, the `(row of cond, weight)` of each of its AND parts."""


@dataclass(frozen=True)
class Conditioning:
    """Text embeddings of one batch at one step; pooled vectors only for SDXL-family models.

    `uncond` has one row per image. `cond` has one row per image too, unless a prompt has several weighted `AND`
    parts: then it has one row per part and `parts` says which rows belong to which image with what weight
    (`parts` is None exactly when every image has one part of weight 1, the plain CFG case).
    """

    cond: torch.Tensor
    uncond: torch.Tensor
    pooled: torch.Tensor | None = None
    uncond_pooled: torch.Tensor | None = None
    parts: PartRows | None = None


@dataclass(frozen=True)
class ScheduledText:
    """One prompt (or AND part) over the steps: its weight, schedule and the embedding of each scheduled text."""

    weight: float
    schedule: tuple[ScheduledPrompt, ...]
    encoded: Mapping[str, EncodedText]

    def at(self, step: int) -> EncodedText:
        return self.encoded[select_scheduled(self.schedule, step).text]


def _stack(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack (T, C) rows into (N, T, C), repeating the last vector of shorter rows (A1111)."""
    length = max(row.shape[0] for row in rows)
    padded = [row if row.shape[0] == length else torch.cat([row, row[-1:].expand(length - row.shape[0], -1)])
              for row in rows]
    return torch.stack(padded)


def _pad_to(tensor: torch.Tensor, length: int, empty: torch.Tensor) -> torch.Tensor:
    """Append copies of the empty prompt's embedding (A1111 `pad_cond`)."""
    repeats = (length - tensor.shape[1]) // empty.shape[0]
    if repeats <= 0:
        return tensor
    return torch.cat([tensor, empty.unsqueeze(0).repeat(tensor.shape[0], repeats, 1)], dim=1)


@dataclass(frozen=True)
class ConditioningSchedule:
    """The encoded conditioning of a batch over all steps: per image its AND parts, and its negative prompt."""

    prompts: tuple[tuple[ScheduledText, ...], ...]
    negatives: tuple[ScheduledText, ...]
    extra_networks: tuple[ExtraNetworkRef, ...] = ()
    empty: EncodedText | None = None
    """The empty prompt's embedding when `pad_cond_uncond` is on, else None."""

    @property
    def part_rows(self) -> PartRows | None:
        """`Conditioning.parts` (constant over the steps: editing changes texts, never the AND structure)."""
        if all(len(parts) == 1 and parts[0].weight == 1.0 for parts in self.prompts):
            return None
        rows, next_row = [], 0
        for parts in self.prompts:
            rows.append(tuple((next_row + index, part.weight) for index, part in enumerate(parts)))
            next_row += len(parts)
        return tuple(rows)

    def selection(self, step: int) -> tuple[EncodedText, ...]:
        """The embeddings used at `step` (equal tuples give equal conditionings)."""
        return tuple(part.at(step) for parts in self.prompts for part in parts) + tuple(
            negative.at(step) for negative in self.negatives)

    def at_step(self, step: int) -> Conditioning:
        """The conditioning the UNet uses at sampler step `step`."""
        chosen = self.selection(step)
        conds, unconds = chosen[:len(chosen) - len(self.negatives)], chosen[len(chosen) - len(self.negatives):]
        cond, uncond = _stack([c.states for c in conds]), _stack([u.states for u in unconds])
        if self.empty is not None and cond.shape[1] != uncond.shape[1]:
            length = max(cond.shape[1], uncond.shape[1])
            cond, uncond = _pad_to(cond, length, self.empty.states), _pad_to(uncond, length, self.empty.states)
        pooled = uncond_pooled = None
        if conds[0].pooled is not None:
            pooled = torch.stack([c.pooled for c in conds])  # type: ignore[misc]
            uncond_pooled = torch.stack([u.pooled for u in unconds])  # type: ignore[misc]
        return Conditioning(cond, uncond, pooled, uncond_pooled, self.part_rows)


def _scheduled(encoder: PromptEncoder, weight: float, schedule: Sequence[ScheduledPrompt],
               negative: bool) -> ScheduledText:
    texts = [entry.text for entry in schedule]
    encoded = encoder.encode(texts, negative)
    return ScheduledText(weight, tuple(schedule), dict(zip(texts, encoded, strict=True)))


def encode_prompts(
    encoder: PromptEncoder,
    prompts: Sequence[str],
    negative_prompts: Sequence[str],
    steps: int,
    *,
    pad_cond_uncond: bool = False,
    parser: ScheduleParser | None = None,
) -> ConditioningSchedule:
    """The conditioning schedule of `prompts` and `negative_prompts` (one each per image) for `steps` model calls.

    `encoder` holds the model, the encode options and the per-job cache (see `PromptEncoder`)."""
    parser = parser or shared_parser()
    stripped, networks = extract_extra_networks_batch(list(prompts))
    plan = build_conditioning(stripped, steps, parser=parser)
    negative_plan = build_conditioning(list(negative_prompts), steps, composable=False, parser=parser)
    images = tuple(tuple(_scheduled(encoder, part.weight, part.schedule, False) for part in prompt.parts)
                   for prompt in plan.prompts)
    negatives = tuple(_scheduled(encoder, 1.0, prompt.parts[0].schedule, True) for prompt in negative_plan.prompts)
    empty = encoder.encode([""])[0] if pad_cond_uncond else None
    return ConditioningSchedule(images, negatives, tuple(networks), empty)


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
    pooled: torch.Tensor,
    width: int,
    height: int,
    options: CoreOptions,
    negative: bool,
) -> dict[str, torch.Tensor]:
    """UNet `added_cond_kwargs` (text_embeds, time_ids) for rows of one side (prompt or negative)."""
    values = [sdxl_time_ids(identity, width, height, options, negative)]
    ids = torch.tensor(values, dtype=pooled.dtype, device=pooled.device)
    return {"text_embeds": pooled, "time_ids": ids.repeat(pooled.shape[0], 1)}
