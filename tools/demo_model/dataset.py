"""Synthetic captioned dataset of the demo model: one coloured shape on a coloured background, drawn by code.

Every image is a flat `background` colour with one flat `foreground` shape (circle, square or triangle) of a
random size and position, no anti-aliasing. Its caption names all three: "a red circle on a blue background".
Size and position vary but are not captioned (the model draws them anywhere, at any of the training sizes).

Everything is a pure function of a seed: `make_dataset(n, seed)` returns the same images and captions on every
machine. `HELD_OUT` lists foreground/background/shape triples that never appear in training (each held-out
colour still appears with that shape and on that background elsewhere), so evaluation can measure whether the
model composes words it has only seen apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESOLUTION = 64
MIN_SIZE = 24
MAX_SIZE = 40
MARGIN = 4

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (250, 130, 10),
    "yellow": (250, 235, 50),
    "green": (40, 170, 60),
    "blue": (40, 70, 225),
    "purple": (140, 50, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")


@dataclass(frozen=True)
class Scene:
    """One image's content: colours by name, shape, side length and top-left corner of the bounding box (pixels)."""

    foreground: str
    background: str
    shape: str
    size: int
    x: int
    y: int

    @property
    def caption(self) -> str:
        return caption(self.foreground, self.background, self.shape)

    @property
    def combination(self) -> tuple[str, str, str]:
        return (self.foreground, self.background, self.shape)


def caption(foreground: str, background: str, shape: str) -> str:
    """The prompt describing a scene: 'a red circle on a blue background', 'an orange square on a ...'."""
    return f"{_article(foreground)} {foreground} {shape} on {_article(background)} {background} background"


def partial_caption(foreground: str | None, background: str | None, shape: str | None) -> str:
    """A caption naming only some of a scene's attributes (None = not named): 'a red circle', 'a circle on a blue
    background', 'a red shape on a blue background', 'a red shape', 'a circle', 'a blue background'; all three give
    `caption`, none the empty caption."""
    thing = shape or "shape"
    if foreground is None and shape is None:
        return f"{_article(background)} {background} background" if background else ""
    subject = f"{_article(foreground)} {foreground} {thing}" if foreground else f"{_article(thing)} {thing}"
    return f"{subject} on {_article(background)} {background} background" if background else subject


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _held_out() -> frozenset[tuple[str, str, str]]:
    """Eight triples: colour i as foreground on colour i+3 as background, shape i mod 3."""
    n = len(COLOUR_NAMES)
    return frozenset(
        (COLOUR_NAMES[i], COLOUR_NAMES[(i + 3) % n], SHAPES[i % len(SHAPES)]) for i in range(n)
    )


HELD_OUT: frozenset[tuple[str, str, str]] = _held_out()
"""(foreground, background, shape) triples never shown in training: red circle on green, orange square on blue,
yellow triangle on purple, green circle on white, blue square on black, purple triangle on red, white circle on
orange, black square on yellow."""


def all_combinations() -> list[tuple[str, str, str]]:
    """Every (foreground, background, shape) with two different colours, in a fixed order (168 triples)."""
    return [
        (fg, bg, shape) for fg in COLOUR_NAMES for bg in COLOUR_NAMES if fg != bg for shape in SHAPES
    ]


def training_combinations() -> list[tuple[str, str, str]]:
    """The triples training draws from: all combinations minus `HELD_OUT`."""
    return [combo for combo in all_combinations() if combo not in HELD_OUT]


def random_scene(rng: np.random.Generator, combination: tuple[str, str, str], resolution: int = RESOLUTION) -> Scene:
    """A scene of `combination` with a random size and position drawn from `rng`."""
    scale = resolution / RESOLUTION
    size = int(rng.integers(round(MIN_SIZE * scale), round(MAX_SIZE * scale) + 1))
    margin = round(MARGIN * scale)
    x = int(rng.integers(margin, resolution - margin - size + 1))
    y = int(rng.integers(margin, resolution - margin - size + 1))
    return Scene(*combination, size=size, x=x, y=y)


def shape_mask(shape: str, size: int, x: int, y: int, resolution: int = RESOLUTION) -> np.ndarray:
    """Boolean (H, W) mask of a shape whose bounding box is `size` pixels square at (x, y); pixel centres decide."""
    cy, cx = np.mgrid[0:resolution, 0:resolution].astype(np.float64) + 0.5
    u = (cx - x) / size  # 0..1 across the bounding box
    v = (cy - y) / size
    inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    if shape == "square":
        return inside
    if shape == "circle":
        return (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    if shape == "triangle":  # apex at the top centre, base along the bottom edge
        return inside & (np.abs(u - 0.5) <= v / 2)
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def render(scene: Scene, resolution: int = RESOLUTION) -> np.ndarray:
    """The scene as a (H, W, 3) uint8 RGB array."""
    image = np.empty((resolution, resolution, 3), dtype=np.uint8)
    image[:] = COLOURS[scene.background]
    image[shape_mask(scene.shape, scene.size, scene.x, scene.y, resolution)] = COLOURS[scene.foreground]
    return image


@dataclass(frozen=True)
class Dataset:
    """Images (N, H, W, 3) uint8, with one scene and caption per image."""

    images: np.ndarray
    scenes: tuple[Scene, ...]

    @property
    def captions(self) -> list[str]:
        return [scene.caption for scene in self.scenes]


def make_scenes(n: int, seed: int, combinations: list[tuple[str, str, str]] | None = None,
                resolution: int = RESOLUTION) -> list[Scene]:
    """`n` scenes cycling through a seeded shuffle of `combinations` (default: the training ones), so every
    combination appears equally often."""
    combos = combinations if combinations is not None else training_combinations()
    rng = np.random.default_rng(seed)
    scenes: list[Scene] = []
    while len(scenes) < n:
        for index in rng.permutation(len(combos))[: n - len(scenes)]:
            scenes.append(random_scene(rng, combos[int(index)], resolution))
    return scenes


def make_dataset(n: int, seed: int, combinations: list[tuple[str, str, str]] | None = None,
                 resolution: int = RESOLUTION) -> Dataset:
    """`n` rendered scenes; the same `seed` gives the same images and captions."""
    scenes = make_scenes(n, seed, combinations, resolution)
    images = np.stack([render(scene, resolution) for scene in scenes]) if scenes else np.zeros(
        (0, resolution, resolution, 3), dtype=np.uint8)
    return Dataset(images=images, scenes=tuple(scenes))
