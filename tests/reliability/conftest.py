"""Fixtures of the reliability suite: tiny tokenizers, a fake base model, bad inputs.

Everything here is small and built once per session; the CLI cases copy what they change.
Hypothesis profiles: ``quick`` (default, part of ``make test``) and ``fuzz`` (``make fuzz``,
selected by ``LIQUIDGEN_FUZZ_PROFILE=fuzz``); see docs/reliability.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

QUICK_EXAMPLES = 25
FUZZ_EXAMPLES = int(os.environ.get("LIQUIDGEN_FUZZ_EXAMPLES", "1000"))

settings.register_profile(
    "quick",
    max_examples=QUICK_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples every run: `make test` never flakes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
settings.register_profile(
    "fuzz",
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,  # no example database in the work tree; failures print their example
)
settings.load_profile(os.environ.get("LIQUIDGEN_FUZZ_PROFILE", "quick"))


def _make_tiny_vq(directory: Path, *, authors_format: bool = False) -> Path:
    try:
        from tiny_models import make_tiny_vq  # tests/tiny_models.py (on pytest's pythonpath)
    except ImportError:
        from liquidgen.testing import make_tiny_vq  # type: ignore[no-redef]
    return make_tiny_vq(directory, authors_format=authors_format)


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of inputs: ``vq`` (liquidgen format), ``avq`` (authors'), ``pvq`` (a
    ``vqgan.ckpt`` that is a malicious pickle), ``img.png``, ``codes.jsonl`` (a valid 2x2
    grid), ``base`` (an HF-looking folder with a valid safetensors header)."""
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("assets")
    _make_tiny_vq(root / "vq")
    _make_tiny_vq(root / "avq", authors_format=True)
    (root / "pvq").mkdir()
    (root / "pvq" / "vqgan.yaml").write_text((root / "avq" / "vqgan.yaml").read_text())
    torch.save({"state_dict": {"x": _Evil()}}, root / "pvq" / "vqgan.ckpt")
    Image.new("RGB", (32, 32), (200, 30, 30)).save(root / "img.png")
    (root / "codes.jsonl").write_text('{"grid": [2, 2], "codes": [[0, 1], [2, 3]]}\n')
    (root / "base").mkdir()
    (root / "base" / "config.json").write_text('{"model_type": "llama"}\n')
    save_file({"w": torch.zeros(64, 64)}, str(root / "base" / "model.safetensors"))
    return root


class _Evil:
    """Unpickling this runs code: liquidgen must refuse it (weights_only loading)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch PWNED",))
