"""Train the bundled demo model (`models/Stable-diffusion/demo-shapes.safetensors`) from scratch, offline.

    .venv/bin/python -m tools.demo_model.train --threads 1 --out models/Stable-diffusion/demo-shapes.safetensors

The model is a real Stable Diffusion 1.x architecture at toy width, trained on the synthetic shapes of
`tools.demo_model.dataset` (64 x 64 px, the smallest size the generation core accepts):

1. VAE: diffusers `AutoencoderKL` with four blocks (scale factor 8, 4 latent channels), trained on
   reconstruction (MSE of the posterior mean's decoding) plus a tiny KL term, mostly on 32 px windows. The
   whole training set is then encoded once (posterior mean, as the core's img2img does) and the VAE
   `scaling_factor` is set to 1 / std of those latents.
2. UNet + text encoder, jointly: `UNet2DConditionModel` with cross-attention and a 2-layer `CLIPTextModel`
   (hidden 64) reading the real CLIP-L tokenizer's ids (77 tokens, padded with <|endoftext|>, last hidden state,
   exactly as `modules.core.conditioning` encodes prompts). Epsilon prediction on the standard SD schedule
   (1000 steps, scaled_linear 0.00085-0.012), Min-SNR-5 loss weighting, captions from `CaptionSampler` (10 %
   empty so that classifier-free guidance works; on low-noise steps some naming a wrong colour or shape, which
   train the UNet only), AdamW with warm-up and cosine decay, EMA weights saved.
3. The parts become an SD 1.x `ComponentSet` (scheduler config = `modules.models.tiny.BASE_SCHEDULER_CONFIG`, so
   every sampler of the registry works) and are written with `modules.models.convert.save_single_file` (A1111
   key layout, configs embedded in the safetensors metadata), in float16 when float32 would exceed 30 MB.

Runs are deterministic for a given seed, device and thread count (seeded generators, deterministic algorithms).

Measured (shipped model, defaults, `--threads 1` on 2 shared CPU cores, session 4): VAE 345 s, latents 32 s,
UNet + text encoder 2,326 s (9,000 steps at ~0.26 s), total 2,705 s (45 min) from scratch, bit for bit the shipped
file. Scores (DPM++ 2M, 20 steps, CFG 7, 192 prompt/seed pairs): foreground colour 93.8 %, background 99.5 %, shape
97.9 %; a negative prompt naming the colour makes it rarer; img2img at strength 0.3 with an unrelated prompt keeps
the init's colours. Details, every experiment and the reproduction in tools/demo_model/RESULTS.md.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from modules.models.components import ComponentSet
from modules.models.convert import save_single_file
from modules.models.identity import Family, ModelIdentity
from modules.models.loaders import load_checkpoint, load_tokenizer
from modules.models.tiny import BASE_SCHEDULER_CONFIG
from tools.demo_model.dataset import (
    COLOUR_NAMES,
    RESOLUTION,
    SHAPES,
    Scene,
    caption,
    make_dataset,
    partial_caption,
    training_combinations,
)

log = logging.getLogger("tools.demo_model.train")

DEFAULT_OUT = Path("models/Stable-diffusion/demo-shapes.safetensors")
MAX_FILE_BYTES = 30 * 2**20
CAPTION_DROPOUT = 0.1
CAPTION_NOISE = 0.0  # per attribute (colour, background, shape): chance that the caption names a wrong one
CAPTION_NOISE_LOW = 0.3  # the same chance on low-noise steps (timestep < LOW_NOISE_BELOW)
CAPTION_PARTIAL = 0.0  # chance that a caption names only some of the scene's attributes ("a red circle")
LOW_NOISE_BELOW = 300  # timestep (sigma 0.83); img2img at strength 0.3 starts at sigma 0.40 (t ~125, Karras)
MIN_SNR_GAMMA = 5.0
EMA_DECAY = 0.999
VAE_CROP_FRACTION = 0.8

VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [16, 32, 64, 64],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": RESOLUTION,
}
TEXT_CONFIG = {
    "vocab_size": 49408,
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "max_position_embeddings": 77,
    "projection_dim": 64,
    "hidden_act": "quick_gelu",
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
    "layer_norm_eps": 1e-5,
}
UNET_CONFIG = {
    "sample_size": RESOLUTION // 8,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": [32, 64, 64],
    "norm_num_groups": 16,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 64,
    "attention_head_dim": 8,
}


@dataclass(frozen=True)
class TrainConfig:
    """Command-line settings of one run."""

    out: Path = DEFAULT_OUT
    seed: int = 0
    vae_steps: int = 3000
    unet_steps: int = 9000
    device: str = "cpu"
    images: int = 8192
    vae_batch: int = 8
    unet_batch: int = 32
    vae_lr: float = 1e-3
    unet_lr: float = 6e-4
    log_every: int = 50
    save_every: int = 0  # also write the EMA model every N UNet steps (0: only at the end)
    threads: int = 0  # CPU threads for torch (0: torch's default)
    caption_noise: float = CAPTION_NOISE
    caption_noise_low: float = CAPTION_NOISE_LOW
    low_noise_below: int = LOW_NOISE_BELOW
    vae_from: Path | None = None  # reuse the VAE of this checkpoint instead of training one (stage 1 skipped)
    spare_text_encoder: bool = True  # captions with a mistake train the UNet only (no text encoder gradient)
    caption_partial: float = CAPTION_PARTIAL


def _setup(config: TrainConfig) -> torch.device:
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.device(config.device)


def _batches(n: int, batch: int, steps: int, seed: int) -> Iterator[torch.Tensor]:
    """`steps` index batches drawn without replacement within each epoch (seeded permutation per epoch)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    cursor = 0
    for _ in range(steps):
        if cursor + batch > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        yield order[cursor : cursor + batch]
        cursor += batch


def _to_pixels(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]."""
    return images.to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10 %."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


class StepTimer:
    """Logs loss and seconds per step every `every` steps."""

    def __init__(self, stage: str, steps: int, every: int) -> None:
        self.stage, self.steps, self.every = stage, steps, every
        self.started = self.last = time.perf_counter()
        self.losses: list[float] = []

    def tick(self, step: int, loss: float) -> None:
        self.losses.append(loss)
        if (step + 1) % self.every == 0 or step + 1 == self.steps:
            now = time.perf_counter()
            count = (step % self.every) + 1
            log.info("%s step %d/%d loss %.5f (%.3f s/step)", self.stage, step + 1, self.steps,
                     float(np.mean(self.losses[-count:])), (now - self.last) / count)
            self.last = now

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def _crop(pixels: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """One random `size` x `size` window (the same for the whole batch)."""
    top, left = (int(v) for v in torch.randint(0, pixels.shape[-1] - size + 1, (2,), generator=generator))
    return pixels[..., top : top + size, left : left + size]


def train_vae(images: torch.Tensor, config: TrainConfig, device: torch.device) -> AutoencoderKL:
    """Stage 1: an AutoencoderKL trained on reconstructions of `images` (uint8, N x H x W x 3).

    The first `VAE_CROP_FRACTION` of the steps see random 32 x 32 windows (a quarter of the compute per step, so
    four times the optimiser steps for the time; the VAE is convolutional), the rest whole images."""
    torch.manual_seed(config.seed + 1)
    vae = AutoencoderKL(**VAE_CONFIG).to(device).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, config.vae_steps, 20))
    timer = StepTimer("vae", config.vae_steps, config.log_every)
    crop_steps = int(config.vae_steps * VAE_CROP_FRACTION)
    generator = torch.Generator().manual_seed(config.seed + 12)
    for step, index in enumerate(_batches(len(images), config.vae_batch, config.vae_steps, config.seed + 11)):
        pixels = _to_pixels(images[index], device)
        if step < crop_steps:
            pixels = _crop(pixels, RESOLUTION // 2, generator)
        posterior = vae.encode(pixels).latent_dist
        reconstruction = vae.decode(posterior.mode()).sample
        loss = torch.nn.functional.mse_loss(reconstruction, pixels) + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        timer.tick(step, loss.item())
    log.info("vae stage: %d steps (%d on 32 px windows) in %.0f s", config.vae_steps, crop_steps, timer.elapsed())
    return vae.eval().requires_grad_(False)


def reuse_vae(path: Path, device: torch.device) -> AutoencoderKL:
    """The VAE of an earlier checkpoint of this script, instead of stage 1 (its scaling factor is recomputed)."""
    components = load_checkpoint(path, ModelIdentity(Family.SD1))
    log.info("vae stage skipped: VAE of %s", path)
    return components.vae.to(device).eval().requires_grad_(False)


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, images: torch.Tensor, device: torch.device, batch: int = 256) -> torch.Tensor:
    """Posterior means of all images; sets the VAE's scaling_factor to 1 / their std and returns scaled latents."""
    started = time.perf_counter()
    means = [vae.encode(_to_pixels(images[i : i + batch], device)).latent_dist.mean
             for i in range(0, len(images), batch)]
    latents = torch.cat(means)
    scaling = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scaling)
    log.info("encoded %d images in %.0f s; latent std %.4f -> scaling_factor %.5f", len(images),
             time.perf_counter() - started, 1.0 / scaling, scaling)
    return latents * scaling


class CaptionSampler:
    """Token ids of each training image's caption: 10 % of captions empty (so that CFG has an unconditional model)
    and, independently per attribute, a small chance that the caption names a wrong colour or shape: `noise` on
    most steps, `noise_low` on low-noise steps (timestep below `low_below`).

    The wrong words play the part of web captions' mistakes. With captions that are always exactly right, the model
    learns to paint from the caption alone, even where the noisy image already shows its colours: img2img at a low
    denoising strength then repaints the init in the new prompt's colours. Wrong words on low-noise steps teach it
    that there the image, not the prompt, decides, and leave the conditional model unsure enough that guidance
    (CFG > 1) is what makes it follow every word, as with real checkpoints. Swapped captions stay training
    combinations (never a held-out one, never the same colour twice). The shipped recipe uses mistakes on low-noise
    steps only (`CAPTION_NOISE_LOW` per attribute below timestep `LOW_NOISE_BELOW`), and the samples flagged as
    mistaken train the UNet only (`TrainConfig.spare_text_encoder`), so that the text encoder keeps every colour word
    distinct and a negative prompt still works (RESULTS.md).

    With `partial`, a caption names only some of the attributes ("a red circle", "a blue background"): an experiment
    to make single words such as a negative prompt's "red" mean something to the model; off by default (it did not
    help, RESULTS.md run F)."""

    def __init__(self, tokenizer: CLIPTokenizer, scenes: Sequence[Scene], seed: int,
                 noise: float = CAPTION_NOISE, noise_low: float = CAPTION_NOISE_LOW,
                 low_below: int = LOW_NOISE_BELOW, partial: float = CAPTION_PARTIAL) -> None:
        self.noise, self.noise_low, self.low_below, self.partial = noise, noise_low, low_below, partial
        self.combinations = training_combinations()
        self.index = {combo: i for i, combo in enumerate(self.combinations)}
        self.ids = self._tokenize(tokenizer, [caption(*combo) for combo in self.combinations])
        # the six ways of naming some but not all of (foreground, background, shape), per combination
        self.subsets = [keep for keep in itertools.product((True, False), repeat=3)
                        if any(keep) and not all(keep)]
        texts = sorted({partial_caption(*self._named(combo, keep))
                        for combo in self.combinations for keep in self.subsets})
        self.partial_row = {text: i for i, text in enumerate(texts)}
        self.partial_ids = self._tokenize(tokenizer, texts)
        self.empty = self._tokenize(tokenizer, [""])[0]
        self.rows = torch.tensor([self.index[scene.combination] for scene in scenes])
        self.generator = torch.Generator().manual_seed(seed)

    @staticmethod
    def _tokenize(tokenizer: CLIPTokenizer, texts: list[str]) -> torch.Tensor:
        """Padded to 77 with <|endoftext|>, as the core tokenises prompts."""
        return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids

    @staticmethod
    def _named(combo: tuple[str, str, str], keep: tuple[bool, ...]) -> tuple[str | None, ...]:
        return tuple(word if kept else None for word, kept in zip(combo, keep))

    def _partial(self, combo: tuple[str, str, str]) -> tuple[torch.Tensor, tuple[bool, ...]] | None:
        """With chance `partial`: the ids of a caption naming a random non-empty proper subset of `combo`, and which
        attributes it names."""
        if float(torch.rand((), generator=self.generator)) >= self.partial:
            return None
        keep = self.subsets[int(torch.randint(len(self.subsets), (), generator=self.generator))]
        return self.partial_ids[self.partial_row[partial_caption(*self._named(combo, keep))]], keep

    def _mistake(self, combo: tuple[str, str, str], rate: float) -> tuple[str, str, str]:
        words = list(combo)
        for slot, vocabulary in enumerate((COLOUR_NAMES, COLOUR_NAMES, SHAPES)):
            if float(torch.rand((), generator=self.generator)) >= rate:
                continue
            choice = vocabulary[int(torch.randint(len(vocabulary), (), generator=self.generator))]
            candidate = (*words[:slot], choice, *words[slot + 1:])
            if candidate in self.index:  # a training combination with two different colours
                words = list(candidate)
        return (words[0], words[1], words[2])

    def __call__(self, index: torch.Tensor, timesteps: torch.Tensor,
                 dropped: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 77) ids for the images at `index`, noised to `timesteps`, empty where `dropped` (bool, B); and which
        of them name a wrong colour or shape (bool, B)."""
        true_rows = self.rows[index]
        rows = torch.tensor([self.index[self._mistake(self.combinations[int(row)],
                                                      self.noise_low if int(t) < self.low_below else self.noise)]
                             for row, t in zip(true_rows, timesteps)])
        ids = self.ids[rows].clone()
        mistaken = (rows != true_rows) & ~dropped
        if self.partial > 0:  # (no draws otherwise: the default recipe's caption stream stays as it was)
            for i, (row, true_row) in enumerate(zip(rows.tolist(), true_rows.tolist())):
                shortened = None if dropped[i] else self._partial(self.combinations[row])
                if shortened is not None:
                    ids[i], keep = shortened
                    named = zip(self.combinations[row], self.combinations[true_row], keep)
                    mistaken[i] = any(kept and word != truth for word, truth, kept in named)
        ids[dropped] = self.empty
        return ids, mistaken


class Ema:
    """Exponential moving average of a set of modules' parameters (warm-up: decay grows as (1+t)/(10+t))."""

    def __init__(self, modules: Sequence[torch.nn.Module]) -> None:
        self.shadow = [copy.deepcopy(module).requires_grad_(False) for module in modules]
        self.modules = list(modules)
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(EMA_DECAY, (1 + self.updates) / (10 + self.updates))
        for shadow, module in zip(self.shadow, self.modules):
            for averaged, current in zip(shadow.parameters(), module.parameters()):
                averaged.lerp_(current, 1.0 - decay)


def _snr_weights(scheduler: DDPMScheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """Min-SNR-gamma weights for epsilon prediction: min(SNR, gamma) / SNR."""
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas / (1.0 - alphas)
    return torch.clamp(snr, max=MIN_SNR_GAMMA) / snr


def training_scheduler() -> DDPMScheduler:
    """The noise schedule training adds noise with: the shipped model's scheduler config, as a DDPMScheduler."""
    return DDPMScheduler.from_config({k: v for k, v in BASE_SCHEDULER_CONFIG.items() if k != "_class_name"})


def _denoiser_loss(unet: UNet2DConditionModel, text_encoder: CLIPTextModel, scheduler: DDPMScheduler,
                   latents: torch.Tensor, ids: torch.Tensor, noise: torch.Tensor,
                   timesteps: torch.Tensor, spared: torch.Tensor | None = None) -> torch.Tensor:
    """Min-SNR-weighted epsilon loss; the text encoder gets no gradient from the samples where `spared` (bool, B)."""
    noise, timesteps = noise.to(latents.device), timesteps.to(latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    states = text_encoder(ids)[0]
    if spared is not None:
        states = torch.where(spared.to(states.device)[:, None, None], states.detach(), states)
    prediction = unet(noisy, timesteps, encoder_hidden_states=states).sample
    per_image = (prediction - noise).pow(2).mean(dim=(1, 2, 3))
    return (per_image * _snr_weights(scheduler, timesteps)).mean()


def train_denoiser(latents: torch.Tensor, scenes: Sequence[Scene], tokenizer: CLIPTokenizer, config: TrainConfig,
                   device: torch.device, on_save: Callable[[Ema], None] | None = None
                   ) -> tuple[UNet2DConditionModel, CLIPTextModel]:
    """Stage 2: UNet + text encoder on cached latents, captions from `CaptionSampler`; returns the EMA weights.

    With `config.save_every`, `on_save(ema)` is called every that many steps (to write intermediate models)."""
    torch.manual_seed(config.seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG)).to(device).train()
    torch.manual_seed(config.seed + 3)
    unet = UNet2DConditionModel(**UNET_CONFIG).to(device).train()
    scheduler = training_scheduler()
    captions = CaptionSampler(tokenizer, scenes, config.seed + 23, config.caption_noise,
                              config.caption_noise_low, config.low_noise_below, config.caption_partial)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.unet_lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, config.unet_steps, 200))
    ema = Ema([unet, text_encoder])
    generator = torch.Generator().manual_seed(config.seed + 21)
    timer = StepTimer("unet", config.unet_steps, config.log_every)
    batches = _batches(len(latents), config.unet_batch, config.unet_steps, config.seed + 22)
    for step, index in enumerate(batches):
        # one seeded stream, drawn in this order: caption dropout, noise, timesteps (caption mistakes: their own)
        dropped = torch.rand(len(index), generator=generator) < CAPTION_DROPOUT
        noise = torch.randn(latents[index].shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(index),), generator=generator)
        ids, mistaken = captions(index, timesteps, dropped)
        loss = _denoiser_loss(unet, text_encoder, scheduler, latents[index], ids.to(device), noise, timesteps,
                              mistaken if config.spare_text_encoder else None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        ema.update()
        timer.tick(step, loss.item())
        if on_save is not None and config.save_every and (step + 1) % config.save_every == 0:
            on_save(ema)
    log.info("unet + text encoder stage: %d steps in %.0f s", config.unet_steps, timer.elapsed())
    unet_ema, text_ema = ema.shadow
    return unet_ema.eval(), text_ema.eval()


def save_model(vae: AutoencoderKL, unet: UNet2DConditionModel, text_encoder: CLIPTextModel,
               tokenizer: CLIPTokenizer, out: Path) -> ComponentSet:
    """Wrap the parts as an SD 1.x ComponentSet and write the A1111-layout file (float16 if float32 > 30 MB)."""
    components = ComponentSet(
        identity=ModelIdentity(Family.SD1),
        unet=copy.deepcopy(unet).to("cpu").eval().requires_grad_(False),
        vae=copy.deepcopy(vae).to("cpu").eval().requires_grad_(False),
        text_encoders=(copy.deepcopy(text_encoder).to("cpu").eval().requires_grad_(False),),
        tokenizers=(tokenizer,),
        scheduler_config=dict(BASE_SCHEDULER_CONFIG),
    )
    dtype = torch.float16 if components.nbytes() > MAX_FILE_BYTES else None
    out.parent.mkdir(parents=True, exist_ok=True)
    save_single_file(components, out, dtype=dtype,
                     metadata={"modelspec.resolution": f"{RESOLUTION}x{RESOLUTION}"})
    log.info("saved %s (%.1f MB, %s)", out, out.stat().st_size / 2**20, "float16" if dtype else "float32")
    return components


def train(config: TrainConfig) -> ComponentSet:
    """All stages; logs the time of each."""
    device = _setup(config)
    started = time.perf_counter()
    dataset = make_dataset(config.images, config.seed)
    images = torch.from_numpy(dataset.images)
    log.info("dataset: %d images in %.1f s", len(images), time.perf_counter() - started)
    vae = train_vae(images, config, device) if config.vae_from is None else reuse_vae(config.vae_from, device)
    latents = encode_latents(vae, images, device)
    tokenizer = load_tokenizer("clip_l")

    def save_intermediate(ema: Ema) -> None:
        save_model(vae, ema.shadow[0], ema.shadow[1], tokenizer, config.out)

    unet, text_encoder = train_denoiser(latents, dataset.scenes, tokenizer, config, device, save_intermediate)
    components = save_model(vae, unet, text_encoder, tokenizer, config.out)
    log.info("total training time %.0f s (%d threads, device %s)", time.perf_counter() - started,
             torch.get_num_threads(), device)
    return components


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(description="Train the bundled demo model (coloured shapes) from scratch.")
    defaults = TrainConfig()
    parser.add_argument("--out", type=Path, default=defaults.out, help="checkpoint to write (.safetensors)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--vae-steps", type=int, default=defaults.vae_steps)
    parser.add_argument("--unet-steps", type=int, default=defaults.unet_steps)
    parser.add_argument("--device", default=defaults.device, help="cpu, cuda, cuda:1, mps ...")
    parser.add_argument("--images", type=int, default=defaults.images, help="training set size")
    parser.add_argument("--vae-batch", type=int, default=defaults.vae_batch)
    parser.add_argument("--unet-batch", type=int, default=defaults.unet_batch)
    parser.add_argument("--log-every", type=int, default=defaults.log_every)
    parser.add_argument("--save-every", type=int, default=defaults.save_every,
                        help="also write the (EMA) model every N UNet steps, so a stopped run leaves a usable file")
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help="torch CPU threads (1 is fastest on a machine whose cores are busy with other work)")
    parser.add_argument("--caption-noise", type=float, default=defaults.caption_noise,
                        help="chance per caption attribute of naming a wrong colour or shape")
    parser.add_argument("--caption-noise-low", type=float, default=defaults.caption_noise_low,
                        help="the same chance on low-noise steps (timestep < --low-noise-below)")
    parser.add_argument("--low-noise-below", type=int, default=defaults.low_noise_below)
    parser.add_argument("--vae-from", type=Path, default=None,
                        help="reuse the VAE of this checkpoint (e.g. an earlier run with the same seed, whose VAE is "
                             "identical) instead of training one: iterate on the UNet stage ~6 minutes faster")
    parser.add_argument("--spare-text-encoder", action=argparse.BooleanOptionalAction,
                        default=defaults.spare_text_encoder,
                        help="captions with a mistake train the UNet only: the text encoder gets no gradient from "
                             "them (default; --no-spare-text-encoder lets them train it too)")
    parser.add_argument("--caption-partial", type=float, default=defaults.caption_partial,
                        help="chance that a caption names only some attributes ('a red circle', 'a blue background')")
    args = parser.parse_args(argv)
    return TrainConfig(out=args.out, seed=args.seed, vae_steps=args.vae_steps, unet_steps=args.unet_steps,
                       device=args.device, images=args.images, vae_batch=args.vae_batch,
                       unet_batch=args.unet_batch, log_every=args.log_every,
                       save_every=args.save_every, threads=args.threads,
                       caption_noise=args.caption_noise, caption_noise_low=args.caption_noise_low,
                       low_noise_below=args.low_noise_below, vae_from=args.vae_from,
                       spare_text_encoder=args.spare_text_encoder, caption_partial=args.caption_partial)


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    train(parse_args(argv))


if __name__ == "__main__":
    main()
