"""TrainConfig: YAML loading, dotted overrides and validation with the offending key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from liquidgen.errors import ConfigError
from liquidgen.training.config import OptimConfig, TrainConfig, apply_overrides, load_config

from .conftest import write_config

BASE = {
    "model": {"path": "m"},
    "data": {"sources": [{"name": "t2i", "modality": "t2i", "train": "d"}]},
    "out_dir": "o",
    "max_steps": 10,
    "global_batch": 8,
    "micro_batch": 2,
}


def test_yaml_with_overrides(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", BASE)
    config = load_config(
        path, ["optim.lr=1e-3", "data.sources.0.weight=2", "optim.grad_clip=null", "max_steps=3"]
    )
    assert config.optim.lr == pytest.approx(1e-3)
    assert config.data.sources[0].weight == 2.0
    assert config.optim.grad_clip is None
    assert config.max_steps == 3
    assert config.grad_accum(world_size=2) == 2
    # the resolved YAML round-trips
    assert TrainConfig.from_dict(__import__("yaml").safe_load(config.to_yaml())) == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown key(s) ['lrr']"),
        ("optim.lr=fast", "OptimConfig.lr: expected a number"),
        ("optim.lr=-1", "optim.lr must be > 0"),
        ("micro_batch=3", "multiple of micro_batch"),
        ("data.sources.0.modality=video", "modality must be one of"),
        ("data.sources.3.weight=1", "not an index"),
        ("precision=fp16", "precision must be one of"),
        ("max_steps", "key=value"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, override: str, message: str) -> None:
    path = write_config(tmp_path / "c.yaml", BASE)
    with pytest.raises(ConfigError, match=__import__("re").escape(message)):
        load_config(path, [override])


def test_packed_attention_refuses_gradient_checkpointing(tmp_path: Path) -> None:
    """The backward's recomputation would run without the packed attention (torch refuses
    the mismatch mid-training): refused when the config loads."""
    path = write_config(tmp_path / "c.yaml", BASE)
    overrides = ["model.attn_implementation=packed", "model.gradient_checkpointing=true"]
    with pytest.raises(ConfigError, match=r"cannot be combined with model\.gradient_checkpointing"):
        load_config(path, overrides)
    assert load_config(path, overrides[:1]).model.attn_implementation == "packed"


def test_world_size_must_divide_the_batch() -> None:
    config = TrainConfig.from_dict(dict(BASE))
    with pytest.raises(ConfigError, match="micro_batch x world_size"):
        config.grad_accum(world_size=3)


def test_missing_required_key() -> None:
    data = {k: v for k, v in BASE.items() if k != "out_dir"}
    with pytest.raises(ConfigError, match="missing required key"):
        TrainConfig.from_dict(data)


def test_override_creates_nested_mapping() -> None:
    assert apply_overrides({}, ["a.b.c=[1, 2]"]) == {"a": {"b": {"c": [1, 2]}}}


def test_cli_prints_the_resolved_config_and_reports_bad_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from liquidgen.cli import main

    path = write_config(tmp_path / "c.yaml", BASE)
    assert main(["train", str(path), "optim.z_loss=1e-4", "--print-config"]) == 0
    assert "z_loss: 0.0001" in capsys.readouterr().out
    assert main(["train", str(path), "optim.zloss=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key(s) ['zloss']" in err


def test_shared_coercion_converts_yaml_values_and_names_the_key() -> None:
    from liquidgen.utils.config import coerce

    assert coerce([1, "2e-3"], tuple[int, float], "k") == (1, 0.002)  # YAML's "2e-3" string
    assert coerce(None, int | None, "k") is None
    assert coerce([[1, 2]], tuple[tuple[int, int], ...], "k") == ((1, 2),)
    sizes = {tuple[int, int]: lambda v: (int(v), int(v))}
    assert coerce(["8", [4, 2]], list[tuple[int, int]], "k", parsers=sizes) == [(8, 8), (4, 2)]
    for value, hint, message in [
        (True, int, "k: expected an integer, got True"),  # a bool is not an int in a config
        ([1], tuple[int, int], "k: expected a list of 2 values"),
        ([1, "x"], list[int], "k[1]: expected an integer"),
        ({"a": 1}, OptimConfig, "k: expected a mapping for OptimConfig"),  # no `nested` given
    ]:
        with pytest.raises(ConfigError, match=__import__("re").escape(message)):
            coerce(value, hint, "k")
