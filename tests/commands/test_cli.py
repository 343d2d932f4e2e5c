from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from trading_engine.commands.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_help_works(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "check-config" in capsys.readouterr().out


def _commands(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
    """Every command and subcommand of ``parser``, as argument lists."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append([*prefix, name])
                found.extend(_commands(sub, [*prefix, name]))
    return found


def test_every_commands_help_works(capsys: pytest.CaptureFixture[str]) -> None:
    from trading_engine.commands.cli import build_parser

    commands = _commands(build_parser(), [])
    assert ["feed"] in commands
    assert ["journal", "pnl"] in commands
    for command in commands:
        with pytest.raises(SystemExit) as info:
            main([*command, "--help"])
        assert info.value.code == 0, command
        assert capsys.readouterr().out.startswith("usage: "), command


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["no-such-command"], "argument COMMAND"),
        (["backtest", "--from", "garbage", "x.csv"], "argument --from: 'garbage'"),
        (["run", "--duration", "abc"], "argument --duration"),
        (["journal", "nope"], "argument VIEW"),
        (["exchange-sim", "--rate", "nan"], "argument --rate"),
        (["exchange-sim", "--hang-s", "-1"], "argument --hang-s"),
    ],
)
def test_a_usage_error_is_one_line_naming_the_argument_and_exits_2(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert named in err
    assert err.rstrip().endswith("--help)")


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["replay", "/"], "trading-engine: /: Is a directory"),
        (
            ["bench", "--json", "/nonexistent/x.json"],
            "--json: no folder /nonexistent to write /nonexistent/x.json in",
        ),
    ],
)
def test_a_path_that_cannot_be_used_is_one_line_and_exit_2(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert line in err
    assert "Traceback" not in err


def test_check_config_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(ROOT / "config" / "engine.toml")]) == 0
    assert "valid" in capsys.readouterr().out


def test_check_config_notes_an_unset_admin_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRADING_ENGINE_ADMIN_TOKEN", raising=False)
    assert main(["check-config", str(ROOT / "config" / "engine.toml")]) == 0
    err = capsys.readouterr().err
    assert "note: admin.token_env: no admin token configured" in err
    assert "nor a halted start resumed" in err
    monkeypatch.setenv("TRADING_ENGINE_ADMIN_TOKEN", "t")
    assert main(["check-config", str(ROOT / "config" / "engine.toml")]) == 0
    assert "admin.token_env" not in capsys.readouterr().err


def test_check_config_invalid_prints_each_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "engine.toml"
    bad.write_text('[feed]\nport = -1\n[engine]\nloop = "x"\n')
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "feed.port" in err
    assert "engine.loop" in err


def test_check_config_prints_the_strategies_errors_with_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "engine.toml"
    bad.write_text(
        '[feed]\nport = -1\n[[instruments]]\nsymbol = "BTC-USD"\ntick_size = "0.01"\n'
        'lot_size = "0.001"\n[[strategies]]\nname = "t"\n'
        'class = "strategies.threshold:ThresholdTaker"\nsymbols = ["BTC-USD"]\n'
        'params = { side = "up", trigger_price = "99.00", quantity = "1" }\n'
    )
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[1].startswith("  feed.port: ")
    assert err[2] == "  strategies[0].params.side: Input should be 'buy' or 'sell' (value 'up')"
    assert len(err) == 3


def test_a_config_file_that_is_not_utf8_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latin1 = tmp_path / "engine.toml"
    latin1.write_bytes(b"# settings\n# r\xe9sum\xe9\n[feed]\nport = 7001\n")
    assert main(["check-config", str(latin1)]) == 2
    assert main(["run", "--config", str(latin1), "--duration", "1"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{latin1}: invalid"
    assert err[1] == (
        f"  {latin1}: not valid TOML: line 2: byte 0xe9 is not UTF-8 (save the file as UTF-8)"
    )
    assert "Traceback" not in "\n".join(err)


def test_console_script_runs_as_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trading_engine", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0
    assert "trading-engine" in done.stdout
