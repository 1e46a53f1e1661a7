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


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 78000000000 bytes. Error code 12"
        ),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    ],
)
def test_out_of_memory_is_one_line_with_status_2(
    error: BaseException, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed allocation (e.g. ``generate -n`` under ``prlimit --as``) names the limits to
    lower in one line instead of a torch traceback."""
    import argparse

    import liquidgen.cli as cli

    def fail(args: argparse.Namespace) -> int:
        raise error

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=fail)
    monkeypatch.setattr(cli, "build_parser", lambda argv: parser)
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out of memory" in err and "LIQUIDGEN_MAX_BATCH" in err


def test_other_runtime_errors_still_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    import liquidgen.cli as cli

    def fail(args: argparse.Namespace) -> int:
        raise RuntimeError("a bug")

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=fail)
    monkeypatch.setattr(cli, "build_parser", lambda argv: parser)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main([])
