"""Fréchet distance: reference math, feature functions, loading, the ``eval fid`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import linalg

from liquidgen.cli import main
from liquidgen.errors import ConfigError
from liquidgen.evaluation.fid import (
    color_edge_features,
    compute_features,
    fid,
    frechet_distance,
    gaussian_statistics,
    load_feature_fn,
    scene_features,
)
from liquidgen.world import render, sample_scene


def _renders(seed: int, count: int, size: tuple[int, int] = (48, 32)) -> list[Image.Image]:
    return [render(sample_scene(np.random.default_rng([seed, i]), *size)) for i in range(count)]


def _noise(seed: int, count: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)) for _ in range(count)
    ]


def pytorch_fid_formula(mu1, sigma1, mu2, sigma2) -> float:
    """pytorch-fid's calculate_frechet_distance (scipy sqrtm of the product)."""
    covmean = linalg.sqrtm(sigma1 @ sigma2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def test_frechet_distance_matches_the_reference_formula_and_closed_form() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(1.0, 2.0, size=(150, 6)) @ rng.normal(size=(6, 6))
    stats_a, stats_b = gaussian_statistics(a), gaussian_statistics(b)
    assert frechet_distance(*stats_a, *stats_b) == pytest.approx(
        pytorch_fid_formula(*stats_a, *stats_b), rel=1e-8
    )
    # diagonal covariances: |mu1 - mu2|^2 + sum (s1 + s2 - 2 sqrt(s1 s2))
    mu1, mu2 = np.array([0.0, 1.0]), np.array([3.0, 1.0])
    s1, s2 = np.array([1.0, 4.0]), np.array([9.0, 1.0])
    expected = 9.0 + (1 + 9 - 2 * 3) + (4 + 1 - 2 * 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)
    with pytest.raises(ConfigError, match="at least 2"):
        gaussian_statistics(a[:1])


def test_fid_is_zero_for_identical_sets_and_orders_different_ones() -> None:
    world_a, world_b = _renders(1, 40), _renders(2, 40)
    assert fid(world_a, world_a) == pytest.approx(0.0, abs=1e-8)  # singular covariances too
    same_kind = fid(world_a, world_b)
    different = fid(world_a, _noise(3, 40))
    assert 0.0 < same_kind < different
    assert fid(world_a, world_a, scene_features) == pytest.approx(0.0, abs=1e-8)
    assert fid(world_a, _noise(3, 40), scene_features) > fid(world_a, world_b, scene_features)


def test_feature_functions_have_fixed_shapes() -> None:
    images = _renders(4, 3) + _renders(5, 2, (32, 64))
    colour_edge = color_edge_features(images)
    assert colour_edge.shape == (5, 128) and np.isfinite(colour_edge).all()
    # histograms are fractions of the image: the 64 colour bins sum to one
    assert colour_edge[:, :64].sum(axis=1) == pytest.approx(np.ones(5))
    scene = scene_features(images)
    assert scene.shape == (5, 24)
    assert (scene[:, 16] >= 1).all()  # every render holds at least one object


def test_feature_functions_load_by_name_or_file(tmp_path: Path) -> None:
    assert load_feature_fn("liquidgen.evaluation.fid:scene_features") is scene_features
    script = tmp_path / "myfeatures.py"
    script.write_text(
        "import numpy as np\n"
        "def features(images):\n"
        "    return np.array([[im.width, im.height] for im in images], float)\n"
    )
    fn = load_feature_fn(str(script))  # attribute defaults to `features`
    assert compute_features(fn, _renders(0, 3)).tolist() == [[48.0, 32.0]] * 3
    for bad, message in (
        ("no_such_module_xyz:f", "no module named"),
        ("liquidgen.evaluation.fid:nothing", "no callable"),
        (str(tmp_path / "missing.py"), "no such file"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_feature_fn(bad)
    with pytest.raises(ConfigError, match="expected \\(N, D\\)"):
        compute_features(lambda ims: np.zeros(len(ims)), _renders(0, 2))
    with pytest.raises(ConfigError, match="NaN"):
        compute_features(lambda ims: np.full((len(ims), 2), np.nan), _renders(0, 2))


def test_eval_fid_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    real, fake = tmp_path / "real", tmp_path / "fake"
    for folder, images in ((real, _renders(1, 12)), (fake, _noise(2, 12))):
        folder.mkdir()
        for i, image in enumerate(images):
            image.save(folder / f"{i}.png")
    out = tmp_path / "out"
    assert main(["eval", "fid", "--real", str(real), "--fake", str(real), "--out", str(out)]) == 0
    assert "FID 0.0000" in capsys.readouterr().out
    assert main(["eval", "fid", "--real", str(real), "--fake", str(fake), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("FID ")
    import json

    result = json.loads((out / "fid.json").read_text())
    assert result["fid"] > 0 and result["dimensions"] == 128
    assert result["real"]["images"] == result["fake"]["images"] == 12

    assert main(["eval", "fid", "--real", str(real)]) == 2
    assert capsys.readouterr().err.strip() == (
        "liquidgen: error: give exactly one of --fake DIR and --model DIR"
    )
    assert main(["eval", "fid", "--real", str(real), "--fake", str(fake), "--features", "x:y"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["eval", "fid", "--real", str(tmp_path / "none"), "--fake", str(fake)]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_eval_fid_generates_from_a_model(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    for i, image in enumerate(_renders(1, 4, (32, 32))):
        image.save(real / f"{i}.png")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\na blue star\n")
    out = tmp_path / "out"
    argv = ["eval", "fid", "--real", str(real), "--model", str(tiny_dir), "--prompts", str(prompts)]
    assert main([*argv, "--n", "2", "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in (out / "fake").iterdir()) == [f"{i:06d}.png" for i in range(4)]
    assert Image.open(out / "fake" / "000000.png").size == (32, 32)
    capsys.readouterr()
    assert main([*argv, "--n", "0"]) == 2
    assert "n (images per prompt)" in capsys.readouterr().err
