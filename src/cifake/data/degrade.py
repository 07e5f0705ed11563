"""Image degradations that happen to pictures in the wild, on (N, 32, 32, 3) uint8 batches.

Used to measure robustness (`cifake robustness`) and, as random degradations, to train for it
(`cifake train --degrade P`). Each returns a new uint8 array and leaves its input untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import simplejpeg
from PIL import Image

Degradation = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def jpeg(quality: int) -> Degradation:
    """Re-encode as JPEG at `quality` with 4:2:0 chroma subsampling (what most encoders do by default)."""
    def apply(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.stack([simplejpeg.decode_jpeg(simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality, "RGB",
                                                                         "420"), "RGB") for image in images])
    return apply


def rescale(scale: float) -> Degradation:
    """Down-scale by `scale`, then back up to the original size, both bilinear (a shared, re-uploaded thumbnail)."""
    def apply(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = images.shape[1:3]
        small = (max(1, round(width * scale)), max(1, round(height * scale)))
        return np.stack([np.asarray(Image.fromarray(image).resize(small, Image.BILINEAR).resize(
            (width, height), Image.BILINEAR)) for image in images])
    return apply


def blur(sigma: float) -> Degradation:
    """Gaussian blur with standard deviation `sigma` pixels (reflected borders)."""
    def apply(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from scipy.ndimage import gaussian_filter  # here: training without blur runs without scipy

        smooth = gaussian_filter(images.astype(np.float32), sigma=(0, sigma, sigma, 0), mode="reflect", truncate=3.0)
        return np.clip(np.rint(smooth), 0, 255).astype(np.uint8)
    return apply


def noise(sigma: float) -> Degradation:
    """Additive Gaussian noise of standard deviation `sigma` in 0..255 pixel units."""
    def apply(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noisy = images.astype(np.float32) + rng.normal(0, sigma, images.shape).astype(np.float32)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return apply


# The conditions `cifake robustness` reports, in table order.
CONDITIONS: dict[str, Degradation | None] = {
    "clean": None,
    "jpeg q95": jpeg(95), "jpeg q75": jpeg(75), "jpeg q50": jpeg(50), "jpeg q30": jpeg(30),
    "scale 0.75x": rescale(0.75), "scale 0.5x": rescale(0.5),
    "blur sigma 0.5": blur(0.5), "blur sigma 1.0": blur(1.0),
    "noise sigma 2": noise(2.0), "noise sigma 5": noise(5.0), "noise sigma 10": noise(10.0),
}

# What robust training draws from: the same families over ranges around the measured levels.
TRAINING_FAMILIES: list[Callable[[np.random.Generator], Degradation]] = [
    lambda rng: jpeg(int(rng.integers(30, 96))),
    lambda rng: rescale(float(rng.uniform(0.5, 0.9))),
    lambda rng: blur(float(rng.uniform(0.3, 1.2))),
    lambda rng: noise(float(rng.uniform(1.0, 10.0))),
]


def degrade(images: np.ndarray, condition: str, seed: int = 0) -> np.ndarray:
    """One named condition applied to a batch (seeded, for the noise); any array-like of uint8 images."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; known: {', '.join(CONDITIONS)}")
    function = CONDITIONS[condition]
    images = np.asarray(images)
    return images.copy() if function is None else function(images, np.random.default_rng(seed))


def random_shifts(images: np.ndarray, pixels: int, rng: np.random.Generator) -> np.ndarray:
    """Each image moved by a random whole number of pixels, up to `pixels` each way on each axis, the border
    reflected in: no interpolation, so every pixel keeps its exact value (and its generator's traces)."""
    count, height, width = images.shape[:3]
    padded = np.pad(images, ((0, 0), (pixels, pixels), (pixels, pixels), (0, 0)), mode="reflect")
    down, right = rng.integers(0, 2 * pixels + 1, size=(2, count))
    # A window sliced per image: 0.50 ms for 128 images against 2.28 ms for one fancy-indexing gather of the
    # same pixels (the gather walks an index per byte), 2 % of a bundled-recipe training step.
    return np.stack([padded[i, d : d + height, r : r + width] for i, (d, r) in enumerate(zip(down, right))])


def random_degradations(images: np.ndarray, probability: float, rng: np.random.Generator) -> np.ndarray:
    """Each image degraded with `probability` by one degradation drawn from TRAINING_FAMILIES; a new array."""
    out = images.copy()
    chosen = np.flatnonzero(rng.random(len(images)) < probability)
    for index in chosen:
        family = TRAINING_FAMILIES[int(rng.integers(len(TRAINING_FAMILIES)))]
        out[index] = family(rng)(images[index : index + 1], rng)[0]
    return out
