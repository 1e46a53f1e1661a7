"""Rendering and parsing: pixels match scenes, parse(render(scene)) == scene, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from liquidgen.errors import ConfigError, ImageReadError, ShapeError
from liquidgen.world.degrade import DEGRADATIONS, degrade
from liquidgen.world.parse import load_image, parse
from liquidgen.world.render import render
from liquidgen.world.scene import (
    BACKGROUNDS,
    COLORS,
    SHAPES,
    ObjectRequest,
    Scene,
    make_object,
    sample_scene,
    scenes_match,
)

SIZES_TESTED = [(64, 64), (128, 128), (96, 160), (160, 96)]


def test_render_draws_the_scene() -> None:
    obj = make_object("square", "blue", "large", 40.38, 30, 64)  # left edge at x = 29.5
    image = render(Scene(80, 64, "cream", (obj,)))
    assert image.mode == "RGB" and image.size == (80, 64)
    pixels = np.asarray(image)
    assert tuple(pixels[0, 0]) == BACKGROUNDS["cream"]
    assert tuple(pixels[30, 40]) == COLORS["blue"]
    # anti-aliasing: pixel 29 is half covered, so it is half blue, half cream
    expected = (np.asarray(BACKGROUNDS["cream"]) + np.asarray(COLORS["blue"])) / 2
    assert np.abs(pixels[30, 29].astype(float) - expected).max() <= 1
    assert render(Scene(80, 64, "cream", (obj,))).tobytes() == image.tobytes()


@pytest.mark.parametrize(("width", "height"), SIZES_TESTED)
def test_parse_recovers_rendered_scenes_at_every_size(width: int, height: int) -> None:
    rng = np.random.default_rng(11)
    for _ in range(25):
        scene = sample_scene(rng, width, height)
        found = parse(render(scene))
        assert scenes_match(scene, found), (scene.to_json(), found.to_json())
        assert found.background == scene.background


def test_parse_recovers_every_shape_and_colour() -> None:
    rng = np.random.default_rng(12)
    for shape in SHAPES:
        for color in COLORS:
            requests = [ObjectRequest(shape, color, "small")]
            scene = sample_scene(rng, 64, 64, split=None, objects=requests)
            assert scenes_match(scene, parse(render(scene))), (shape, color)


@pytest.mark.parametrize("kind", sorted(DEGRADATIONS))
def test_parse_survives_degradations(kind: str) -> None:
    rng = np.random.default_rng(13)
    hits = 0
    for _ in range(12):
        scene = sample_scene(rng, 128, 128)
        degraded = degrade(render(scene), kind, rng, scene)
        assert degraded.size == (128, 128)
        hits += scenes_match(scene, parse(degraded))
    assert hits >= 11, f"{kind}: {hits}/12"


def test_degradations_change_pixels_deterministically() -> None:
    scene = sample_scene(np.random.default_rng(0), 96, 160)
    image = render(scene)
    for kind in DEGRADATIONS:
        a = degrade(image, kind, np.random.default_rng(1), scene)
        b = degrade(image, kind, np.random.default_rng(1), scene)
        assert a.tobytes() == b.tobytes()
        assert a.tobytes() != image.tobytes(), kind


def test_blank_and_tiny_images_parse_to_empty_scenes() -> None:
    blank = parse(Image.new("RGB", (128, 96), (250, 250, 250)))
    assert blank.objects == () and (blank.width, blank.height) == (128, 96)
    assert blank.background == "white"
    one = parse(Image.new("RGB", (1, 1), (35, 65, 215)))
    assert one.objects == () and (one.width, one.height) == (1, 1)
    noise = np.random.default_rng(0).normal(240, 3, (64, 64, 3)).clip(0, 255).astype(np.uint8)
    assert parse(noise).objects == ()


def test_non_rgb_inputs_are_converted() -> None:
    scene = sample_scene(np.random.default_rng(21), 128, 128)
    rgb = render(scene)
    for converted in (rgb.convert("RGBA"), rgb.convert("P"), np.asarray(rgb)):
        assert scenes_match(scene, parse(converted))
    # Grayscale is converted too (colours are lost, so only dark objects stand out).
    dark = Scene(64, 64, "white", (make_object("circle", "black", "large", 32, 32, 64),))
    assert [o.shape for o in parse(render(dark).convert("L")).objects] == ["circle"]
    rgba = np.zeros((64, 64, 4), np.uint8)  # fully transparent -> white -> empty
    assert parse(rgba).objects == ()
    assert parse(Image.fromarray(rgba[..., 0], "L")).objects == ()


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="uint8"):
        parse(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ShapeError):
        parse(np.zeros((8, 8, 5), np.uint8))
    with pytest.raises(ImageReadError):
        parse("image.png")  # type: ignore[arg-type]
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    with pytest.raises(ImageReadError, match="not an image"):
        load_image(bad)
    with pytest.raises(ImageReadError, match="no such file"):
        load_image(tmp_path / "missing.png")
    truncated = tmp_path / "truncated.png"
    render(sample_scene(np.random.default_rng(0), 64, 64)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(ImageReadError):
        load_image(truncated)


def test_degradation_strength_scales_the_damage() -> None:
    scene = sample_scene(np.random.default_rng(0), 128, 128)
    clean = np.asarray(render(scene), dtype=float)

    def error(kind: str, strength: float) -> float:
        image = degrade(render(scene), kind, np.random.default_rng(2), scene, strength=strength)
        return float(np.abs(np.asarray(image, dtype=float) - clean).mean())

    for kind in ("blur", "noise", "color_shift", "ragged"):
        assert error(kind, 0.0) < 0.01 < error(kind, 1.0) < error(kind, 2.0), kind
    with pytest.raises(ConfigError):
        degrade(render(scene), "all", np.random.default_rng(0), scene, strength=-1)
    with pytest.raises(ConfigError):
        degrade(render(scene), "jpeg", np.random.default_rng(0), scene)
    with pytest.raises(ConfigError):
        degrade(render(scene), "blobs", np.random.default_rng(0))  # needs the scene


def test_parse_noise_image_with_negative_coverage_does_not_crash() -> None:
    """Regression: pure noise once gave a component whose raw coverage summed below 0."""
    path = Path(__file__).parents[1] / "fixtures" / "world" / "noise_negative_mass.png"
    scene = parse(Image.open(path).convert("RGB"))
    assert all(o.bbox[2] > o.bbox[0] and o.bbox[3] > o.bbox[1] for o in scene.objects)
