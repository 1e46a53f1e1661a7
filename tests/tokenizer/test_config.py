"""VQGANConfig.from_dict: every value of a damaged or hand-edited config is a ConfigError."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from liquidgen.cli import main
from liquidgen.errors import ConfigError
from liquidgen.tokenizer import VQGANConfig


def _config(**ddconfig: object) -> dict:
    data = VQGANConfig().to_dict()
    data["ddconfig"].update(ddconfig)
    return data


def test_round_trip_and_numbers_of_either_kind() -> None:
    config = VQGANConfig(ch=64, ch_mult=(1, 2), dropout=0.1, norm="pixel", mid_attn=False)
    assert VQGANConfig.from_dict(config.to_dict()) == config
    assert VQGANConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert VQGANConfig.from_dict(_config(dropout=0)).dropout == 0  # an integer is a number
    authors = {"ddconfig": {"ch_mult": [1, 2], "attn_resolutions": []}, "n_embed": 16,
               "embed_dim": 4}  # fmt: skip
    config = VQGANConfig.from_dict(authors)  # lists (yaml, JSON) become tuples; beta defaults
    assert (config.ch_mult, config.attn_resolutions, config.beta) == ((1, 2), (), 0.25)
    assert VQGANConfig.from_dict({**authors, "beta": 1}).beta == 1.0


@pytest.mark.parametrize("dropout", [1, 1.0, -0.1, 2.5, math.nan])
def test_dropout_must_lie_in_0_1(dropout: float) -> None:
    with pytest.raises(ConfigError, match="dropout must"):  # NaN: "must be a finite number"
        VQGANConfig.from_dict(_config(dropout=dropout))
    with pytest.raises(ConfigError, match=r"dropout must lie in \[0, 1\)"):
        VQGANConfig(dropout=dropout)


@pytest.mark.parametrize(
    ("ddconfig", "fragment"),
    [
        ({"dropout": None}, "dropout must be a finite number, got None"),  # "dropout:" left empty
        ({"dropout": "0.1"}, "dropout must be a finite number"),
        ({"dropout": math.inf}, "dropout must be a finite number"),
        ({"dropout": True}, "dropout must be a finite number"),
        ({"ch": 128.0}, "ch must be an integer, got 128.0"),
        ({"ch": "128"}, "ch must be an integer"),
        ({"ch": None}, "ch must be an integer"),
        ({"num_res_blocks": True}, "num_res_blocks must be an integer"),
        ({"z_channels": [256]}, "z_channels must be an integer"),
        ({"double_z": 0}, "double_z must be true or false"),
        ({"norm": 3}, "norm must be a string"),
        ({"mid_attn": "false"}, "mid_attn must be true or false"),  # bool("false") is True
        ({"mid_attn": 0}, "mid_attn must be true or false"),
        ({"ch_mult": [1, "Z"]}, "ch_mult must be a list of integers, got [1, 'Z']"),
        ({"ch_mult": [1, None]}, "ch_mult must be a list of integers"),
        ({"ch_mult": [1, 2.5]}, "ch_mult must be a list of integers"),  # int(2.5) is 2
        ({"ch_mult": [1, True]}, "ch_mult must be a list of integers"),
        ({"ch_mult": 4}, "ch_mult must be a list of integers"),
        ({"ch_mult": "12"}, "ch_mult must be a list of integers"),
        ({"attn_resolutions": [math.inf]}, "attn_resolutions must be a list of integers"),
        ({"encoder_kernel": "three"}, "encoder_kernel must be an integer"),
        ({"encoder_kernel": 3.0}, "encoder_kernel must be an integer"),
        ({"n_embed": 8192}, "unknown ddconfig field"),  # before: a TypeError of __init__
    ],
)
def test_values_that_are_not_numbers_are_config_errors(ddconfig: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=r"VQGAN config|unknown ddconfig") as info:
        VQGANConfig.from_dict(_config(**ddconfig))
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        {"ddconfig": {}, "n_embed": math.inf, "embed_dim": 4},  # int(inf): OverflowError
        {"ddconfig": {}, "n_embed": "many", "embed_dim": 4},
        {"ddconfig": {}, "n_embed": 16},
        {"ddconfig": {}, "n_embed": 16, "embed_dim": 4, "beta": "0.25"},
        {"ddconfig": {}, "n_embed": 16, "embed_dim": 4, "beta": [1]},
        {"ddconfig": {}, "n_embed": 16, "embed_dim": 4, "beta": math.nan},
        {"ddconfig": {}, "n_embed": 16, "embed_dim": 4, "beta": None},
        [1, 2],
    ],
)
def test_top_level_values_are_config_errors(data: object) -> None:
    with pytest.raises(ConfigError):
        VQGANConfig.from_dict(data)  # type: ignore[arg-type]


def test_authors_yaml_with_a_bad_value_is_one_line_on_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``tokenizer convert`` of a vqgan.yaml whose dropout is out of range (the weights are
    never read) and of one whose ``dropout:`` is empty: exit status 2, one line."""
    for name, value in (("range", 1.5), ("empty", None)):
        folder = tmp_path / name
        folder.mkdir()
        params = _config(dropout=value)
        (folder / "vqgan.yaml").write_text(yaml.safe_dump({"model": {"params": params}}))
        (folder / "vqgan.ckpt").write_bytes(b"never read")
        rc = main(["tokenizer", "convert", "--from", str(folder), "--to", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert rc == 2
        assert "dropout must" in err and err.count("\n") == 1
        assert not (tmp_path / "out").exists()
