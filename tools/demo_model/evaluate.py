"""Score the demo model: does it draw what the prompt says? Loaded and run exactly like a real checkpoint.

    .venv/bin/python -m tools.demo_model.evaluate [--model models/Stable-diffusion/demo-shapes.safetensors]

The file goes through `ModelManager` (catalog, probe, `loaders.load_checkpoint`) and every image through
`modules.core.generate.generate` with a sampler from `default_registry()`, at 64 x 64. Each image is classified
by `tools.demo_model.classify` (background colour, foreground colour, shape) and compared with the prompt:

* txt2img, 20 steps, CFG 7: every training combination once plus each held-out combination with 4 seeds
  (held-out reported separately); the same grid at CFG 1;
* other samplers on a subset;
* negative prompt: the prompt's foreground colour named in the negative prompt -> how often it is still drawn;
* img2img with the caption of another combination: at strength 0.3 the init's colours, shape and place are kept;
  at 1.0 the new prompt wins;
* inpaint: the shape's box repainted with a prompt naming another colour -> new colour inside, pixels outside
  the mask unchanged.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modules.core.generate import generate
from modules.devices import MODEL_DTYPE_AUTOMATIC, MODEL_DTYPES, DevicePlan
from modules.models.components import ComponentSet
from modules.models.manager import ModelManager, ModelOptions
from modules.paths import DataPaths
from modules.samplers.registry import SamplerRegistry, default_registry
from modules.types import GenerationRequest, InpaintFill
from tools.demo_model.classify import Classification, classify, region_iou
from tools.demo_model.criteria import check, format_checks
from tools.demo_model.dataset import (
    COLOUR_NAMES,
    HELD_OUT,
    RESOLUTION,
    Scene,
    caption,
    random_scene,
    render,
    training_combinations,
)

log = logging.getLogger("tools.demo_model.evaluate")

DEFAULT_MODEL = Path("models/Stable-diffusion/demo-shapes.safetensors")
DEFAULT_SAMPLER = "DPM++ 2M"
OTHER_SAMPLERS = ("Euler a", "Euler", "DDIM", "UniPC", "DPM++ 2M Karras")
HELD_OUT_SEEDS = 4
INPAINT_PAD = 3
EDIT_CASES = 48  # img2img and inpaint cases each (16 was too coarse for a bar at 80 %: one image = 6 points)

Combination = tuple[str, str, str]
Pairs = list[tuple[Combination, int]]


@contextmanager
def open_demo(path: Path, device: str = "cpu", model_dtype: str = MODEL_DTYPE_AUTOMATIC) -> Iterator[ComponentSet]:
    """The checkpoint loaded through a ModelManager (scan, probe, single-file loader), as the web UI loads it;
    `model_dtype` is the "Model precision" setting."""
    plan = DevicePlan(torch.device(device), torch.float32, torch.float32)
    with tempfile.TemporaryDirectory() as data_dir:
        manager = ModelManager(DataPaths(Path(data_dir)), ModelOptions(model_dtype=model_dtype), device_plan=plan,
                               ckpt=Path(path), no_hashing=True)
        with manager.get() as components:
            yield components


@dataclass
class Painter:
    """Runs generation requests of one kind (64 x 64, 20 steps) against loaded components."""

    components: ComponentSet
    registry: SamplerRegistry = field(default_factory=default_registry)
    sampler: str = DEFAULT_SAMPLER

    def run(self, request: GenerationRequest, sampler: str | None = None) -> np.ndarray:
        resolved = self.registry.resolve(sampler or self.sampler)
        output = generate(replace(request, sampler=resolved.label), self.components, resolved)
        return np.asarray(output.images[0].convert("RGB"))

    def txt2img(self, prompt: str, seed: int, cfg: float = 7.0, negative: str = "",
                sampler: str | None = None) -> np.ndarray:
        request = GenerationRequest(prompt=prompt, negative_prompt=negative, seed=seed, steps=20, cfg_scale=cfg,
                                    width=RESOLUTION, height=RESOLUTION)
        return self.run(request, sampler)

    def img2img(self, init: np.ndarray, prompt: str, seed: int, strength: float) -> np.ndarray:
        request = GenerationRequest(mode="img2img", prompt=prompt, seed=seed, steps=20, cfg_scale=7.0,
                                    width=RESOLUTION, height=RESOLUTION, init_image=Image.fromarray(init),
                                    denoising_strength=strength)
        return self.run(request)

    def inpaint(self, init: np.ndarray, mask: np.ndarray, prompt: str, seed: int) -> np.ndarray:
        request = GenerationRequest(mode="inpaint", prompt=prompt, seed=seed, steps=20, cfg_scale=7.0,
                                    width=RESOLUTION, height=RESOLUTION, init_image=Image.fromarray(init),
                                    mask=Image.fromarray(mask.astype(np.uint8) * 255, mode="L"), mask_blur=0,
                                    inpainting_fill=InpaintFill.ORIGINAL, denoising_strength=1.0)
        return self.run(request)


@dataclass
class Tally:
    """Counts of correct background colour, foreground colour, shape and all three, over `n` images."""

    n: int = 0
    background: int = 0
    foreground: int = 0
    shape: int = 0
    all_three: int = 0

    def add(self, expected: Combination, seen: Classification) -> None:
        fg, bg, shape = expected
        self.n += 1
        self.background += seen.background == bg
        self.foreground += seen.foreground == fg
        self.shape += seen.shape == shape
        self.all_three += (seen.foreground, seen.background, seen.shape) == expected

    def rates(self) -> dict[str, float]:
        def pct(count: int) -> float:
            return round(100.0 * count / max(1, self.n), 1)

        return {"n": self.n, "foreground": pct(self.foreground), "background": pct(self.background),
                "shape": pct(self.shape), "all_three": pct(self.all_three)}


def grid_pairs(held_out_seeds: int = HELD_OUT_SEEDS) -> tuple[Pairs, Pairs]:
    """(training pairs, held-out pairs) of (combination, seed): each training combination once, each held-out
    combination with `held_out_seeds` seeds."""
    training = [(combo, 1000 + i) for i, combo in enumerate(training_combinations())]
    held = [(combo, 5000 + 10 * i + s) for i, combo in enumerate(sorted(HELD_OUT)) for s in range(held_out_seeds)]
    return training, held


def score_txt2img(painter: Painter, pairs: Sequence[tuple[Combination, int]], cfg: float = 7.0,
                  sampler: str | None = None) -> Tally:
    tally = Tally()
    for combo, seed in pairs:
        tally.add(combo, classify(painter.txt2img(caption(*combo), seed, cfg=cfg, sampler=sampler)))
    return tally


def score_negative(painter: Painter, pairs: Sequence[tuple[Combination, int]]) -> dict[str, float]:
    """How often the prompt's foreground colour is drawn without / with that colour as the negative prompt."""
    plain = named = 0
    for combo, seed in pairs:
        plain += classify(painter.txt2img(caption(*combo), seed)).foreground == combo[0]
        named += classify(painter.txt2img(caption(*combo), seed, negative=combo[0])).foreground == combo[0]
    n = max(1, len(pairs))
    return {"n": len(pairs), "colour_drawn_without_negative": round(100.0 * plain / n, 1),
            "colour_drawn_with_negative": round(100.0 * named / n, 1)}


def _other_combination(combo: Combination, rng: np.random.Generator) -> Combination:
    """A training combination sharing neither colour nor the shape with `combo`."""
    options = [c for c in training_combinations() if c[0] not in combo[:2] and c[1] not in combo[:2]
               and c[2] != combo[2]]
    return options[int(rng.integers(len(options)))]


def _scenes(count: int, seed: int) -> list[Scene]:
    rng = np.random.default_rng(seed)
    combos = training_combinations()
    return [random_scene(rng, combos[int(i)]) for i in rng.choice(len(combos), size=count, replace=False)]


def score_img2img(painter: Painter, count: int, seed: int = 7) -> dict[str, dict[str, float]]:
    """Init images re-generated with the caption of another combination (no colour or shape in common): at
    strength 0.3 the output keeps the init's colours, shape and place (foreground region IoU with the init); at 1.0
    it follows the new prompt."""
    rng = np.random.default_rng(seed)
    low_keeps, low_follows, high_follows = Tally(), Tally(), Tally()
    iou: list[float] = []
    for i, scene in enumerate(_scenes(count, seed)):
        init = render(scene)
        target = _other_combination(scene.combination, rng)
        low = painter.img2img(init, caption(*target), 3000 + i, 0.3)
        low_keeps.add(scene.combination, classify(low))
        low_follows.add(target, classify(low))
        iou.append(region_iou(init, low))
        high_follows.add(target, classify(painter.img2img(init, caption(*target), 3000 + i, 1.0)))
    return {"strength_0.3_keeps_init": {**low_keeps.rates(), "region_iou_with_init": round(float(np.mean(iou)), 2)},
            "strength_0.3_matches_new_prompt": low_follows.rates(),
            "strength_1.0_matches_new_prompt": high_follows.rates()}


def shape_box_mask(scene: Scene, pad: int = INPAINT_PAD) -> np.ndarray:
    """Boolean (H, W) mask of the scene's shape bounding box grown by `pad` pixels."""
    mask = np.zeros((RESOLUTION, RESOLUTION), dtype=bool)
    top, left = max(0, scene.y - pad), max(0, scene.x - pad)
    mask[top : scene.y + scene.size + pad, left : scene.x + scene.size + pad] = True
    return mask


def score_inpaint(painter: Painter, count: int, seed: int = 11) -> dict[str, float]:
    """Repaint the shape's box with a prompt naming a third colour: new colour inside, outside pixels kept."""
    rng = np.random.default_rng(seed)
    new_colour = old_colour = 0
    outside_max: list[float] = []
    for i, scene in enumerate(_scenes(count, seed)):
        init = render(scene)
        colour = str(rng.choice([c for c in COLOUR_NAMES if c not in (scene.foreground, scene.background)]))
        mask = shape_box_mask(scene)
        result = painter.inpaint(init, mask, caption(colour, scene.background, scene.shape), 4000 + i)
        seen = classify(result)
        new_colour += seen.foreground == colour
        old_colour += seen.foreground == scene.foreground
        outside_max.append(float(np.abs(result.astype(np.int16) - init)[~mask].max()))
    n = max(1, count)
    return {"n": count, "new_colour_inside": round(100.0 * new_colour / n, 1),
            "old_colour_left": round(100.0 * old_colour / n, 1),
            "max_pixel_change_outside_mask": max(outside_max, default=0.0)}


def evaluate(painter: Painter, quick: bool = False) -> dict[str, object]:
    """All scores as a JSON-ready dict; `quick` uses small subsets (a smoke check, not a measurement)."""
    training, held = grid_pairs(1 if quick else HELD_OUT_SEEDS)
    if quick:
        training, held = training[::40], held[::2]
    subset = training[:: 1 if quick else 2]
    small = training[:: 1 if quick else 10]
    scores: dict[str, object] = {"sampler": painter.sampler}
    seen, unseen = score_txt2img(painter, training), score_txt2img(painter, held)
    overall = Tally(*(a + b for a, b in zip(vars(seen).values(), vars(unseen).values())))
    scores["txt2img_cfg7"] = {"all": overall.rates(), "training_combinations": seen.rates(),
                              "held_out_combinations": unseen.rates()}
    log.info("txt2img CFG 7: %s", scores["txt2img_cfg7"])
    scores["txt2img_cfg1"] = {"all": score_txt2img(painter, training + held, 1.0).rates()}
    log.info("txt2img CFG 1: %s", scores["txt2img_cfg1"])
    samplers = {name: score_txt2img(painter, small, sampler=name).rates() for name in OTHER_SAMPLERS}
    scores["other_samplers_cfg7"] = samplers
    for name, rates in samplers.items():
        log.info("sampler %s: %s", name, rates)
    scores["negative_prompt"] = score_negative(painter, subset)
    log.info("negative prompt: %s", scores["negative_prompt"])
    scores["img2img"] = score_img2img(painter, 4 if quick else EDIT_CASES)
    log.info("img2img: %s", scores["img2img"])
    scores["inpaint"] = score_inpaint(painter, 4 if quick else EDIT_CASES)
    log.info("inpaint: %s", scores["inpaint"])
    return scores


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Score the demo model with the pixel classifier.")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--sampler", default=DEFAULT_SAMPLER)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="small subsets: checks the script, measures little")
    parser.add_argument("--json", type=Path, help="also write the scores to this file")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--model-dtype", default=MODEL_DTYPE_AUTOMATIC, choices=MODEL_DTYPES,
                        help="the Model precision setting (bfloat16: weights and compute in bf16)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("modules", "diffusers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.manual_seed(0)
    with open_demo(args.model, args.device, args.model_dtype) as components:
        scores = evaluate(Painter(components, sampler=args.sampler), quick=args.quick)
    text = json.dumps(scores, indent=2)
    log.info("scores of %s:\n%s", args.model, text)
    log.info("criteria:\n%s", format_checks(check(scores)))
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
