"""Degradations that imitate a VQ decoder and a sampler, for testing the parser's robustness.

Each one is stated in absolute terms (pixels, 8-bit levels) because a VQ decoder's blur and
noise do not scale with the image size. At ``strength=1`` (the reference setting):

- ``blur``: Gaussian blur, sigma uniform in ``[0.5, 1.5]`` px.
- ``noise``: i.i.d. Gaussian noise per pixel and channel, sigma 10 levels (of 255).
- ``color_shift``: every channel ``c -> gain * c + offset``, gain in ``[0.9, 1.1]`` and
  offset in ``[-20, 20]`` levels, drawn per channel and applied to the whole image.
- ``ragged``: a smooth random displacement field (amplitude 1 px, correlation ~2 px) warps
  the image, so edges wobble and corners fray.
- ``blobs``: 1-3 stray anti-aliased discs in palette colours, diameter ``[0.02, 0.05] * S``,
  at least ``0.03 * S`` away from every object's box.
- ``all``: ragged, blobs, blur, colour shift and noise together, in that order.

``strength`` multiplies every magnitude (blur sigmas, noise sigma, gain deviation and
offset, displacement amplitude, blob diameters) for stress tests beyond the reference.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from liquidgen.errors import ConfigError
from liquidgen.world.render import SUPERSAMPLE
from liquidgen.world.scene import COLORS, Scene

BLUR_SIGMA = (0.5, 1.5)  # px
NOISE_SIGMA = 10.0  # 8-bit levels
COLOR_GAIN_DEVIATION = 0.1  # gain in [1 - d, 1 + d]
COLOR_OFFSET = 20.0  # 8-bit levels, either sign
RAGGED_AMPLITUDE = 1.0  # px
RAGGED_CORRELATION = 2.0  # px, sigma of the smoothing of the displacement noise
BLOB_COUNT = (1, 3)
BLOB_DIAMETER = (0.02, 0.05)  # fraction of S
BLOB_CLEARANCE = 0.03  # fraction of S between a blob and any object box
BLOB_TRIES = 100

Degradation = Callable[[Image.Image, np.random.Generator, "Scene | None", float], Image.Image]


def _to_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32)  # (H, W, 3)


def _to_image(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="RGB")


def blur(
    image: Image.Image, rng: np.random.Generator, scene: Scene | None = None, strength: float = 1.0
) -> Image.Image:
    """Gaussian blur with a random sigma in ``strength *`` :data:`BLUR_SIGMA`."""
    sigma = strength * rng.uniform(*BLUR_SIGMA)
    return _to_image(ndimage.gaussian_filter(_to_array(image), sigma=(sigma, sigma, 0)))


def noise(
    image: Image.Image, rng: np.random.Generator, scene: Scene | None = None, strength: float = 1.0
) -> Image.Image:
    """Additive Gaussian noise of ``strength *`` :data:`NOISE_SIGMA` levels."""
    array = _to_array(image)
    return _to_image(array + rng.normal(0.0, strength * NOISE_SIGMA, size=array.shape))


def color_shift(
    image: Image.Image, rng: np.random.Generator, scene: Scene | None = None, strength: float = 1.0
) -> Image.Image:
    """A global per-channel gain and offset."""
    deviation = strength * COLOR_GAIN_DEVIATION
    gain = rng.uniform(1 - deviation, 1 + deviation, size=3)
    offset = rng.uniform(-1, 1, size=3) * strength * COLOR_OFFSET
    return _to_image(_to_array(image) * gain + offset)


def ragged(
    image: Image.Image, rng: np.random.Generator, scene: Scene | None = None, strength: float = 1.0
) -> Image.Image:
    """Warp by a smooth random displacement field so edges become ragged."""
    array = _to_array(image)
    h, w = array.shape[:2]
    fields = []
    for _ in range(2):
        field = ndimage.gaussian_filter(rng.normal(size=(h, w)), RAGGED_CORRELATION)
        peak = max(float(np.abs(field).max()), 1e-6)
        fields.append(field * strength * RAGGED_AMPLITUDE / peak)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    coords = [ys + fields[0], xs + fields[1]]
    warped = np.stack(
        [ndimage.map_coordinates(array[..., c], coords, order=1, mode="nearest") for c in range(3)],
        axis=-1,
    )
    return _to_image(warped)


def blobs(
    image: Image.Image, rng: np.random.Generator, scene: Scene | None = None, strength: float = 1.0
) -> Image.Image:
    """Add 1-3 small discs of palette colours away from the scene's objects."""
    if scene is None:
        raise ConfigError("the 'blobs' degradation needs the scene to keep blobs off objects")
    ss = SUPERSAMPLE
    overlay = Image.new("RGBA", (scene.width * ss, scene.height * ss), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    s = scene.short_side
    clearance = BLOB_CLEARANCE * s
    palette = list(COLORS.values())
    for _ in range(int(rng.integers(BLOB_COUNT[0], BLOB_COUNT[1] + 1))):
        d = strength * rng.uniform(*BLOB_DIAMETER) * s
        for _ in range(BLOB_TRIES):
            x, y = rng.uniform(1, scene.width - d - 1), rng.uniform(1, scene.height - d - 1)
            if all(
                x + d + clearance <= o.bbox[0]
                or o.bbox[2] + clearance <= x
                or y + d + clearance <= o.bbox[1]
                or o.bbox[3] + clearance <= y
                for o in scene.objects
            ):
                color = palette[rng.integers(len(palette))]
                draw.ellipse((x * ss, y * ss, (x + d) * ss, (y + d) * ss), fill=(*color, 255))
                break
    # PIL reduces RGBA with premultiplied alpha, so the blobs come out anti-aliased.
    return Image.alpha_composite(image.convert("RGBA"), overlay.reduce(ss)).convert("RGB")


def everything(
    image: Image.Image, rng: np.random.Generator, scene: Scene | None = None, strength: float = 1.0
) -> Image.Image:
    """Ragged edges, stray blobs, blur, colour shift and noise, in that order."""
    for step in (ragged, blobs, blur, color_shift, noise):
        image = step(image, rng, scene, strength)
    return image


DEGRADATIONS: dict[str, Degradation] = {
    "blur": blur,
    "noise": noise,
    "color_shift": color_shift,
    "ragged": ragged,
    "blobs": blobs,
    "all": everything,
}


def degrade(
    image: Image.Image,
    kind: str,
    rng: np.random.Generator,
    scene: Scene | None = None,
    *,
    strength: float = 1.0,
) -> Image.Image:
    """Apply the named degradation (see the module docstring); deterministic given ``rng``."""
    if kind not in DEGRADATIONS:
        raise ConfigError(
            f"unknown degradation {kind!r}; expected one of {', '.join(DEGRADATIONS)}"
        )
    if strength < 0:
        raise ConfigError(f"degradation strength must be >= 0, got {strength}")
    return DEGRADATIONS[kind](image, rng, scene, strength)
