"""The ``feed`` command's flags and ``[[feeds]]`` entries, and the feed processes ``run`` starts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from trading_engine.commands.cli import build_parser, main
from trading_engine.commands.feed import FeedChildren, feed_arguments, instruments_toml
from trading_engine.config import parse_config
from trading_engine.core.errors import ConfigError
from trading_engine.core.feeds import VenueInstrument

INSTRUMENT = {"symbol": "BTCUSDT", "tick_size": "0.01", "lot_size": "0.00001"}


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["feed", *argv])


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["binance", "--to", "127.0.0.1:7001"], "--symbols"),
        (["binance", "--symbols", "BTCUSDT"], "--to"),
        (["binance", "--symbols", "BTCUSDT,", "--to", "h:1"], "--symbols"),
        (["binance", "--symbols", "A,A", "--to", "h:1"], "--symbols"),
        (["binance", "--symbols", "A", "--to", "h:1,nope"], "--to"),
        (["binance", "--symbols", "A", "--to", "h:1", "--ws-url", "http://x"], "--ws-url"),
        (["binance", "--symbols", "A", "--to", "h:1", "--rest-url", "ws://x"], "--rest-url"),
        (["binance", "--symbols", "A", "--to", "h:1", "--entry", "0"], "--entry"),
    ],
)
def test_a_bad_flag_is_one_line_naming_it_and_exit_2(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["feed", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"trading-engine: {flag}: ")


def test_an_unknown_venue_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["feed", "bitmex", "--symbols", "A", "--to", "h:1"])
    assert info.value.code == 2
    assert "argument VENUE: invalid choice: 'bitmex'" in capsys.readouterr().err


def test_flags_override_the_config_entry(tmp_path: Path) -> None:
    config = tmp_path / "engine.toml"
    config.write_text(
        '[[feeds]]\nvenue = "okx"\nsymbols = ["BTC-USDT"]\nto = ["a:1"]\n\n'
        '[[feeds]]\nvenue = "binance"\nsymbols = ["BTCUSDT", "ETHUSDT"]\nto = ["b:2", "c:3"]\n'
        'symbol_map = { BTCUSDT = "BTC-USD" }\nmetrics_port = 9201\nrest_url = "http://r"\n'
    )
    settings, port = feed_arguments(parse("binance", "--config", str(config)))
    assert settings.symbols == ["BTCUSDT", "ETHUSDT"]
    assert settings.to == ["b:2", "c:3"]
    assert settings.engine_symbols() == {"BTCUSDT": "BTC-USD", "ETHUSDT": "ETHUSDT"}
    assert settings.rest_url == "http://r"
    assert port == 9201
    settings, port = feed_arguments(
        parse("binance", "--config", str(config), "--symbols", "ETHUSDT", "--to", "d:4",
              "--metrics-port", "0")
    )  # fmt: skip
    assert settings.engine_symbols() == {"ETHUSDT": "ETHUSDT"}
    assert settings.to == ["d:4"]
    assert port == 0
    with pytest.raises(Exception, match="--entry: \\[\\[feeds\\]\\] entry 0 is for okx"):
        feed_arguments(parse("binance", "--config", str(config), "--entry", "0"))


def test_feeds_configuration_problems_name_the_key() -> None:
    bad_values = {
        "feeds": [
            {"venue": "kraken", "symbols": ["BTC/USD"], "to": ["nohostport"]},
            {"venue": "bitmex", "symbols": ["XBTUSD"]},
        ]
    }
    with pytest.raises(ConfigError) as info:
        parse_config(bad_values, environ={})
    assert info.value.problems == [
        "feeds[0].to[0]: Value error, expected HOST:PORT, got 'nohostport' (value 'nohostport')",
        "feeds[1].venue: Input should be 'binance', 'okx' or 'kraken' (value 'bitmex')",
    ]
    inconsistent = {
        "instruments": [INSTRUMENT],
        "feeds": [
            {"venue": "binance", "symbols": ["BTCUSDT", "XRPUSDT"], "symbol_map": {"DOGE": "X"}},
            {"venue": "okx", "symbols": ["BTC-USDT"], "spawn": False},
            {"venue": "binance", "symbols": ["BTCUSDT", "BTCUSDC"],
             "symbol_map": {"BTCUSDC": "BTCUSDT"}},
        ],
    }  # fmt: skip
    with pytest.raises(ConfigError) as info:
        parse_config(inconsistent, environ={})
    assert info.value.problems == [
        "feeds[0].symbol_map: 'DOGE' is not one of the entry's symbols",
        "feeds[0].symbols: 'XRPUSDT' is not a configured instrument",
        "feeds[1].to: a feed that run does not start needs its engines",
        "feeds[1].symbols: 'BTC-USDT' is not a configured instrument",
        "feeds[2].symbol_map: 'BTCUSDT' is the engine symbol of two venue symbols",
    ]
    with pytest.raises(ConfigError) as info:
        parse_config({}, environ={"TRADING_ENGINE__FEEDS__VENUE": "okx"})
    assert info.value.problems == [
        "TRADING_ENGINE__FEEDS__VENUE: no section [feeds] can be overridden"
    ]


def test_run_starts_a_process_per_spawned_entry(tmp_path: Path) -> None:
    config = parse_config(
        {
            "instruments": [INSTRUMENT, {**INSTRUMENT, "symbol": "BTC-USDT"}],
            "feeds": [
                {"venue": "binance", "symbols": ["BTCUSDT"]},
                {"venue": "okx", "symbols": ["BTC-USDT"], "to": ["e:1"], "spawn": False},
                {"venue": "okx", "symbols": ["BTC-USDT"], "to": ["e:2"]},
            ],
        },
        environ={},
    )
    children = FeedChildren(config, tmp_path / "engine.toml", ["127.0.0.1:7001", "127.0.0.1:7002"])
    base = [sys.executable, "-m", "trading_engine", "feed"]
    assert children.commands == [
        [*base, "binance", "--config", str(tmp_path / "engine.toml"), "--entry", "0",
         "--to", "127.0.0.1:7001,127.0.0.1:7002"],
        [*base, "okx", "--config", str(tmp_path / "engine.toml"), "--entry", "2"],
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="run --config FILE"):
        FeedChildren(config, None, [])


def test_instruments_toml_is_a_valid_configuration() -> None:
    text = instruments_toml(
        [
            VenueInstrument("BTCUSDT", "0.01", "0.00001", "0.00001", "5", "BTC", "USDT"),
            VenueInstrument("BTC/USD", "0.1", "0.00000001"),
        ],
        "binance",
    )
    import tomllib

    config = parse_config(tomllib.loads(text), environ={})
    assert config.instruments[0].min_notional == "5"
    assert (config.instruments[0].base_asset, config.instruments[0].quote_asset) == ("BTC", "USDT")
    assert config.instruments[1].min_quantity is None
    assert config.instrument_map()["BTC/USD"].symbol == "BTC/USD"
