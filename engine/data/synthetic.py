"""`teach`: a synthetic texture data set on which superficial forgetting is large and visible.

Why it exists: on the 8x8 digits the small CNN's inner layers hold generic stroke features, so a
model retrained without a class represents it almost as the original does (CKA ~0.99) and there is
nothing for a baseline to keep superficially. Networks on CIFAR/ImageNet differ: their middle layers
hold class-specific detectors. This generator makes that true on 16x16 grey images that two CPU cores
train on in seconds.

How an image is made (all from one seeded numpy Generator, so a seed gives the same data set):
  * background: mid-grey plus smoothed noise, shared by every class;
  * distractors: a few blobs and short bars at random places, also shared by every class and kept off
    the class scales (blobs are much coarser than any motif; bars are single-pixel thin);
  * the class: 1-2 copies of a small Gabor patch (a windowed grating) at random positions, with a
    class-specific orientation and wavelength. Classes come in "twin" pairs that share an orientation
    and differ only in wavelength, so no single oriented-edge filter separates them;
  * pixel noise.
Because motifs sit at random positions over clutter, a linear model on pixels is near chance (about
15%, chance 10%), so the network must build dedicated motif detectors in its inner layers. A network
trained without a class never builds that class's detector; a network that was trained with it and
then only taught to suppress it at the output still has the detector: superficial forgetting.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class TeachSpec:
    """The generator's knobs (defaults = the `teach` preset)."""
    size: int = 16  # image side in pixels
    num_classes: int = 10  # an even number: classes come in twin pairs sharing an orientation
    train_per_class: int = 300
    test_per_class: int = 40
    patch: int = 7  # motif window (pixels)
    sigma: float = 1.75  # Gaussian envelope of the motif
    wavelengths: tuple[float, float] = (2.6, 4.0)  # first and second twin of each pair
    amplitude: tuple[float, float] = (0.3, 0.6)  # motif contrast, uniform in this range
    copies: tuple[int, int] = (1, 2)  # motifs per image, inclusive
    background: float = 0.12  # std of the smoothed background noise
    distractors: tuple[int, int] = (2, 4)  # blobs and bars per image, inclusive
    noise: float = 0.05  # pixel noise std

    def orientation(self, c: int) -> float:
        """Motif orientation of class c in radians: twin pairs share one of num_classes/2 angles."""
        pairs = self.num_classes // 2
        return (c % pairs) * np.pi / pairs

    def wavelength(self, c: int) -> float:
        return self.wavelengths[c // (self.num_classes // 2)]


def class_names(spec: TeachSpec) -> list[str]:
    return [f"{round(np.degrees(spec.orientation(c)))}deg-{spec.wavelength(c):g}px" for c in range(spec.num_classes)]


def _gabor(spec: TeachSpec, theta: float, wavelength: float, phase: float) -> np.ndarray:
    r = (spec.patch - 1) / 2
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    u = xx * np.cos(theta) + yy * np.sin(theta)
    envelope = np.exp(-(xx ** 2 + yy ** 2) / (2 * spec.sigma ** 2))
    return envelope * np.cos(2 * np.pi * u / wavelength + phase)


def _smooth(a: np.ndarray, passes: int = 2) -> np.ndarray:
    """Cheap separable box blur (wraps at the edges), normalised back to unit std."""
    for _ in range(passes):
        a = (a + np.roll(a, 1, 0) + np.roll(a, -1, 0)) / 3
        a = (a + np.roll(a, 1, 1) + np.roll(a, -1, 1)) / 3
    return a / (a.std() + 1e-8)


def _paste(img: np.ndarray, patch: np.ndarray, rng: np.random.Generator) -> None:
    """Add `patch` at a uniformly random position (fully inside the image)."""
    k = patch.shape[0]
    i, j = rng.integers(0, img.shape[0] - k + 1, size=2)
    img[i:i + k, j:j + k] += patch


def _distractor(spec: TeachSpec, rng: np.random.Generator) -> np.ndarray:
    """A coarse blob or a thin bar: clutter every class shares, away from the motifs' scales."""
    k = spec.size // 2
    r = (k - 1) / 2
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    sign = rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.4)
    if rng.random() < 0.5:
        s = rng.uniform(1.8, 2.6)
        return sign * np.exp(-(xx ** 2 + yy ** 2) / (2 * s ** 2))
    theta = rng.uniform(0, np.pi)
    along = xx * np.cos(theta) + yy * np.sin(theta)
    across = -xx * np.sin(theta) + yy * np.cos(theta)
    half = rng.uniform(1.5, r)
    return sign * ((np.abs(across) < 0.5) & (np.abs(along) <= half)).astype(float)


def render(spec: TeachSpec, label: int, rng: np.random.Generator) -> np.ndarray:
    """One (size, size) image of class `label`, values clipped to [0, 1]."""
    img = 0.5 + spec.background * _smooth(rng.standard_normal((spec.size, spec.size)))
    for _ in range(rng.integers(spec.distractors[0], spec.distractors[1] + 1)):
        _paste(img, _distractor(spec, rng), rng)
    theta, wavelength = spec.orientation(label), spec.wavelength(label)
    for _ in range(rng.integers(spec.copies[0], spec.copies[1] + 1)):
        motif = rng.uniform(*spec.amplitude) * _gabor(spec, theta, wavelength, rng.uniform(0, 2 * np.pi))
        _paste(img, motif, rng)
    img += spec.noise * rng.standard_normal(img.shape)
    return np.clip(img, 0.0, 1.0)


def generate(spec: TeachSpec, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_x, train_y, test_x, test_y): float32 images (N, 1, size, size) in [0, 1], int64 labels,
    exactly train_per_class / test_per_class samples of every class, in a seeded random order."""
    if spec.num_classes < 2 or spec.num_classes % 2:
        raise ValueError(f"teach needs an even number of classes >= 2, got {spec.num_classes}")
    rng = np.random.default_rng([seed, 0x7EAC])  # own stream: the split seed does not shift the images

    def draw(per_class: int):
        y = np.repeat(np.arange(spec.num_classes, dtype=np.int64), per_class)
        rng.shuffle(y)
        x = np.stack([render(spec, int(c), rng) for c in y]).astype(np.float32)[:, None]
        return x, y

    train_x, train_y = draw(spec.train_per_class)
    test_x, test_y = draw(spec.test_per_class)
    return train_x, train_y, test_x, test_y


def describe(spec: TeachSpec = TeachSpec()) -> dict:
    """The knobs, for results.json and the pages."""
    return {"generator": "engine.data.synthetic", **asdict(spec)}
