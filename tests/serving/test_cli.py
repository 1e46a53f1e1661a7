"""`liquidgen serve`: registered, loopback by default, options checked before loading."""

from __future__ import annotations

import pytest

from liquidgen.cli import COMMANDS, build_parser, main
from liquidgen.serving.cli import is_loopback


def test_serve_is_registered_and_listens_on_loopback_by_default() -> None:
    assert COMMANDS["serve"][0] == "liquidgen.serving.cli"
    args = build_parser(["serve"]).parse_args(["serve"])
    assert args.host == "127.0.0.1" and is_loopback(args.host) and args.api_key is None
    args = build_parser(["serve"]).parse_args(["serve", "--host", "0.0.0.0", "--api-key", "k"])
    assert args.host == "0.0.0.0" and not is_loopback(args.host)
    assert is_loopback("localhost") and is_loopback("::1") and not is_loopback("10.0.0.1")


@pytest.mark.parametrize(
    "argv",
    [["--max-n", "0"], ["--timeout", "nan"], ["--max-body-mb", "-1"], ["--max-rows", "x"]],
)
def test_bad_options_are_one_line_usage_errors(argv, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["serve", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("liquidgen serve: error:") and "\n" not in err


def test_missing_model_folder_is_one_line(tmp_path, capsys) -> None:
    assert main(["serve", "--model", str(tmp_path / "nothing")]) == 2
    assert "model folder not found" in capsys.readouterr().err
