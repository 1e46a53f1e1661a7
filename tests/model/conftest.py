"""Shared tiny folders for the model tests (built once per session, a few seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from liquidgen.model.expand import expand
from tiny_models import FAMILIES, make_tiny_backbone, make_tiny_vq


@pytest.fixture(scope="session")
def vq_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny VQGAN (64 codes, 4x downsampling) in the authors' format."""
    return make_tiny_vq(
        tmp_path_factory.mktemp("vq"), codebook_size=64, downsample=4, authors_format=True
    )


@pytest.fixture(scope="session")
def backbones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny base model per family (with spare slots, tied embeddings)."""
    root = tmp_path_factory.mktemp("backbones")
    return {family: make_tiny_backbone(root / family, family) for family in FAMILIES}


@pytest.fixture(scope="session")
def liquids(
    tmp_path_factory: pytest.TempPathFactory, backbones: dict[str, Path], vq_dir: Path
) -> dict[str, Path]:
    """Each backbone expanded into a liquidgen checkpoint."""
    root = tmp_path_factory.mktemp("liquids")
    for family, base in backbones.items():
        expand(base, vq_dir, root / family)
    return {family: root / family for family in backbones}
