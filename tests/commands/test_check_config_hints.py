"""``check-config`` suggests: "did you mean" for misspelled sections and keys (environment
overrides included), and the strategy classes it finds for a bare class name."""

from __future__ import annotations

from pathlib import Path

import pytest

from trading_engine.commands.cli import main

INSTRUMENT = '[[instruments]]\nsymbol = "BTC-USD"\ntick_size = "0.01"\nlot_size = "0.001"\n'


def check(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, list[str]]:
    code = main(["check-config", str(path)])
    err = capsys.readouterr().err
    return code, [line.strip() for line in err.splitlines() if line.startswith("  ")]


def test_misspelled_sections_and_keys_get_did_you_mean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(
        '[engnie]\nlog_level = "info"\n\n[risk]\nmax_positon = "1"\n\n[breaker]\nzzzzzz = 1\n\n'
        '[[instruments]]\nsymbol = "BTC-USD"\ntick_size = "0.01"\nlot_sise = "0.001"\n\n'
        '[[strategies]]\nname = "t"\nclas = "strategies.threshold:ThresholdTaker"\n'
        'symbols = ["BTC-USD"]\n'
    )
    monkeypatch.setenv("TRADING_ENGINE__GATEWAY__TIMOUT_S", "3")
    monkeypatch.setenv("TRADING_ENGINE__GATWAY__TIMEOUT_S", "1")
    code, problems = check(capsys, path)
    assert code == 2
    assert "engnie: unknown section (value {'log_level': 'info'}); did you mean `engine`?" in (
        problems
    )
    assert "risk.max_positon: unknown key (value '1'); did you mean `risk.max_position`?" in (
        problems
    )
    assert "breaker.zzzzzz: unknown key (value 1)" in problems  # nothing close: no guess
    assert (
        "instruments[0].lot_sise: unknown key (value '0.001'); "
        "did you mean `instruments[0].lot_size`?"
    ) in problems
    assert (
        "strategies[0].clas: unknown key (value 'strategies.threshold:ThresholdTaker'); "
        "did you mean `strategies[0].class`?"
    ) in problems
    assert (
        "TRADING_ENGINE__GATEWAY__TIMOUT_S: gateway.timout_s is not a setting (value '3'); "
        "did you mean `TRADING_ENGINE__GATEWAY__TIMEOUT_S`?"
    ) in problems
    assert (
        "TRADING_ENGINE__GATWAY__TIMEOUT_S: no section [gatway] can be overridden; "
        "did you mean `TRADING_ENGINE__GATEWAY__TIMEOUT_S`?"
    ) in problems


MY_STRATEGIES = """
from pathlib import Path
from trading_engine.strategy import Strategy

Path(__file__).with_name("imported").write_text("checking must not run this")


class Mine(Strategy):
    def on_book(self, book):
        pass


class Derived(Mine):
    pass


class NotAStrategy:
    pass
"""


def bare_config(folder: Path, *names: str) -> Path:
    path = folder / "engine.toml"
    path.write_text(
        INSTRUMENT
        + "".join(
            f'\n[[strategies]]\nname = "s{i}"\nclass = "{name}"\nsymbols = ["BTC-USD"]\n'
            for i, name in enumerate(names)
        )
    )
    (folder / "mystrats.py").write_text(MY_STRATEGIES)
    return path


def test_a_bare_class_name_lists_the_strategies_found_with_their_spelling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = bare_config(tmp_path, "ThresholdTakr", "Mine")
    code, problems = check(capsys, path)
    assert code == 2
    assert len(problems) == 2  # one line per problem
    first, second = problems
    assert first.startswith("strategies[0].class: 'ThresholdTakr' is neither module:Class")
    assert "did you mean `strategies.threshold:ThresholdTaker`?" in first
    for spelled in ("strategies.market_maker:MarketMaker", "mystrats:Mine", "mystrats:Derived"):
        assert spelled in first
    assert "NotAStrategy" not in first
    assert "did you mean `mystrats:Mine`?" in second
    # Found by reading the source: the module was not imported.
    assert not (tmp_path / "imported").exists()


def test_strategies_beside_a_config_elsewhere_say_where_to_run_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, problems = check(capsys, bare_config(folder, "Mine"))
    assert code == 2
    assert "did you mean `mystrats:Mine`? (strategy classes found:" in problems[0]
    assert f"mystrats:Mine (run from {folder})" in problems[0]


def test_a_misspelled_strategy_param_gets_did_you_mean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(
        INSTRUMENT + '\n[[strategies]]\nname = "t"\nclass = "strategies.threshold:ThresholdTaker"'
        '\nsymbols = ["BTC-USD"]\n[strategies.params]\nquantiy = "0.001"\nside = "buy"\n'
        'trigger_price = "100.00"\n'
    )
    code, problems = check(capsys, path)
    assert code == 2
    [unknown] = [p for p in problems if p.startswith("strategies[0].params.quantiy:")]
    assert unknown.endswith("; did you mean `strategies[0].params.quantity`?")
