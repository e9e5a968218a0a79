"""Matched noise: the starting picture of Outpainting mk2's new area, noise whose spectrum and colours come from the
picture that is already there (the idea of A1111's `get_matched_noise`, written here with numpy's FFT).

Given a picture and a mask of the area to fill (1 = new, 0 = known):

1. *Reference.* The unknown area is filled with the mean colour of the known pixels, so that the hole adds no edge
   of its own, and the 2-D FFT of this reference is taken per channel: its magnitudes say how much of each spatial
   frequency the picture holds (natural pictures: much more low than high), its phases where the structures are.
2. *Seeded noise.* Uniform noise from a generator seeded by `seed` (the same seed gives the same noise); each
   channel is `grey + color_variation * (channel - grey)`, so `color_variation` 0 gives grey noise and 1 independent
   noise per channel. The noise is softened by a mild low-pass window `1 / ((1 + u^2) (1 + v^2))` (u, v: the
   frequency from -1 to 1 along each axis, scaled to the picture's aspect ratio).
3. *Shaping.* The result's spectrum is `|noise|^2 * |reference|^falloff * phase(reference)`: the reference's phases
   with magnitudes made random by the noise. Multiplying magnitudes by a random positive field is a convolution with
   a random kernel, so the picture's structures are smeared, seed-dependently, over the whole canvas, the hole
   included (the FFT wraps around, so the far side of the picture reaches into the hole too). The fall-off exponent
   `falloff` weighs the reference's magnitudes: 1 keeps the picture's fall-off towards high frequencies, lower
   values flatten it (more fine detail, 0 = only the phases), higher ones steepen it (smoother noise).
4. *Colours.* The inverse FFT is scaled to [0, 1], then, channel by channel, the values in the area to fill are
   given the distribution of the known pixels' values (histogram matching by rank), so the fill has the colours of
   the picture, with its mean colour.
5. The known pixels are kept: the result is `image * (1 - mask) + noise * mask`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

KNOWN_BELOW = 1e-3
"""Mask values below this are the known picture (the colours are matched to these pixels)."""
FILLED_ABOVE = 1e-6
"""Mask values above this are filled (their colours are matched)."""


def _soft_window(height: int, width: int) -> np.ndarray:
    """(H, W) low-pass weights for an unshifted FFT: 1 at frequency 0, 1/4 at the highest frequency of both axes."""
    shortest = min(height, width)
    u = np.fft.fftfreq(width) * 2 * (width / shortest)
    v = np.fft.fftfreq(height) * 2 * (height / shortest)
    return 1.0 / ((1.0 + v[:, None] ** 2) * (1.0 + u[None, :] ** 2))


def _match_distribution(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`values` (1-D) rearranged to the distribution of `reference` (1-D): the value of rank r among n becomes the
    reference's quantile (r + 0.5) / n, linearly interpolated."""
    ranks = np.argsort(np.argsort(values, kind="stable"), kind="stable")
    quantiles = (ranks + 0.5) / len(values)
    ordered = np.sort(reference)
    positions = quantiles * (len(ordered) - 1)
    return np.interp(positions, np.arange(len(ordered)), ordered)


def matched_noise(image: np.ndarray, mask: np.ndarray, seed: int | Sequence[int], falloff: float = 1.0,
                  color_variation: float = 0.05) -> np.ndarray:
    """`image` (H, W, 3) floats in [0, 1] with the area `mask` (H, W, in [0, 1], 1 = new) filled with noise shaped
    from the rest of the picture (see the module doc); (H, W, 3) floats in [0, 1]. `seed` (an int or a sequence of
    ints) seeds the noise: the same arguments give the same result. Raises ValueError when nothing is known."""
    image = np.asarray(image, dtype=np.float64)
    mask = np.clip(np.asarray(mask, dtype=np.float64), 0.0, 1.0)
    if image.ndim != 3 or image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape} and mask {mask.shape} must be (H, W, C) and (H, W)")
    known, filled = mask < KNOWN_BELOW, mask > FILLED_ABOVE
    if not known.any():
        raise ValueError("matched noise needs some known pixels (mask 0)")
    height, width, channels = image.shape
    weight = mask[..., None]
    # 1. reference: the hole at the known pixels' mean colour; its spectrum's magnitudes and phases
    mean = image[known].mean(axis=0)
    spectrum = np.fft.fft2(image * (1.0 - weight) + mean * weight, axes=(0, 1))
    magnitude = np.abs(spectrum)
    phase = np.where(magnitude > 0, spectrum / np.where(magnitude > 0, magnitude, 1.0), 1.0)
    # 2. seeded noise, grey plus a share of colour, softened
    rng = np.random.default_rng(seed)
    noise = rng.random((height, width, channels))
    grey = noise.mean(axis=2, keepdims=True)
    noise = grey + color_variation * (noise - grey)
    noise_spectrum = np.fft.fft2(noise, axes=(0, 1)) * _soft_window(height, width)[..., None]
    # 3. shaping: random magnitudes times the reference's (weighted by the fall-off exponent), the reference's phases
    shaped = np.abs(noise_spectrum) ** 2 * magnitude ** falloff * phase
    result = np.real(np.fft.ifft2(shaped, axes=(0, 1)))
    result -= result.min()
    top = result.max()
    if top > 0:
        result /= top
    # 4. colours of the known pixels, channel by channel, in the filled area
    if filled.any():
        for channel in range(channels):
            result[filled, channel] = _match_distribution(result[filled, channel], image[known, channel])
    # 5. the known picture kept
    return np.clip(image * (1.0 - weight) + result * weight, 0.0, 1.0)
