"""The top-level CLI: every command is registered by its module, and --help stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

from liquidgen.cli import COMMANDS, build_parser, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_is_registered_by_its_module(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser([command])
    sub = next(
        a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0]))
    )
    assert command in sub.choices
    assert sub.choices[command].add_help, f"{command}: only a placeholder was registered"
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: liquidgen " + command in capsys.readouterr().out


def test_top_level_help_lists_every_command_without_loading_torch() -> None:
    code = (
        "import sys\n"
        "from liquidgen.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "assert 'torch' not in sys.modules, 'liquidgen --help imported torch'\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    for command in COMMANDS:
        assert command in out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
