from __future__ import annotations

from pathlib import Path

import pytest

from trading_engine import ConfigError, load_config, parse_config
from trading_engine.config import load_default_config

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_default_config_is_valid() -> None:
    config = load_config(ROOT / "config" / "engine.toml", environ={})
    assert config.feed.port == 7001
    assert config.engine.loop == "priority"
    assert config.instrument_map()["BTC-USD"].price_to_ticks("100.01") == 10001
    assert config.strategies[0].class_ == "strategies.threshold:ThresholdTaker"


def test_embedded_default_is_the_shipped_file() -> None:
    from trading_engine.config import default_config_text, load_default_config

    assert default_config_text() == (ROOT / "config" / "engine.toml").read_text(encoding="utf-8")
    assert load_default_config(environ={}).feed.port == 7001


def test_defaults_match_the_documented_defaults() -> None:
    config = parse_config({}, environ={})
    assert (config.feed.host, config.feed.port, config.feed.max_frame_bytes) == (
        "127.0.0.1",
        7001,
        65536,
    )
    assert (config.admin.port, config.admin.token_env) == (9100, "TRADING_ENGINE_ADMIN_TOKEN")
    assert config.gateway.timeout_s == 0.5
    assert config.breaker.window_size == 20
    assert config.breaker.half_open_calls == 3
    assert config.risk.max_order_quantity == "10"
    assert config.risk.cancel_on_halt is True


def test_environment_overrides_any_table_key() -> None:
    config = parse_config({}, environ={"TRADING_ENGINE__FEED__PORT": "7005", "OTHER": "x"})
    assert config.feed.port == 7005
    config = parse_config({}, environ={"TRADING_ENGINE__RISK__CANCEL_ON_HALT": "false"})
    assert config.risk.cancel_on_halt is False


def test_errors_name_key_value_and_expectation() -> None:
    data = {
        "feed": {"port": "seventy", "bogus": 1},
        "engine": {"loop": "fast"},
        "instruments": [{"symbol": "X", "tick_size": "-1", "lot_size": "1"}],
        "strategies": [{"name": "s", "class": "m:C", "symbols": ["Y"]}],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, environ={"TRADING_ENGINE__GATEWAY__TIMEOUT_S": "-3"})
    text = "\n".join(info.value.problems)
    assert "feed.port" in text
    assert "'seventy'" in text
    assert "feed.bogus: unknown key" in text
    assert "engine.loop" in text
    assert "'fast'" in text
    assert "instruments[0].tick_size" in text
    assert "gateway.timeout_s" in text


def test_cross_checks() -> None:
    data = {
        "instruments": [
            {"symbol": "X", "tick_size": "1", "lot_size": "1"},
            {"symbol": "X", "tick_size": "1", "lot_size": "1"},
        ],
        "strategies": [{"name": "s", "class": "m:C", "symbols": ["Y"]}],
        "breaker": {"window_size": 5, "minimum_calls": 6},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, environ={})
    text = "\n".join(info.value.problems)
    assert "configured twice" in text
    assert "'Y' is not a configured instrument" in text
    assert "breaker.minimum_calls" in text


def test_bad_override_names() -> None:
    with pytest.raises(ConfigError, match="1 invalid"):
        parse_config({}, environ={"TRADING_ENGINE__NOPE__X": "1"})
    with pytest.raises(ConfigError):
        parse_config({}, environ={"TRADING_ENGINE__FEED": "1"})


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[feed\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, environ={})


def test_config_is_frozen() -> None:
    from pydantic import ValidationError

    config = parse_config({}, environ={})
    with pytest.raises(ValidationError):
        config.feed.port = 1  # type: ignore[misc]


def test_shards_split_the_config_by_stable_hash() -> None:
    from trading_engine.core.sharding import shard_of

    base = load_default_config(environ={})
    assert shard_of("BTC-USD", 2) == 0  # crc32: the same on every host and run
    assert shard_of("ETH-USD", 2) == 1
    for shard in (0, 1):
        config = load_default_config(
            environ={
                "TRADING_ENGINE__ENGINE__SHARD": str(shard),
                "TRADING_ENGINE__ENGINE__SHARDS": "2",
            }
        ).for_shard()
        symbols = [item.symbol for item in config.instruments]
        assert symbols == [s.symbol for s in base.instruments if shard_of(s.symbol, 2) == shard]
        for strategy in config.strategies:
            assert all(shard_of(symbol, 2) == shard for symbol in strategy.symbols)
    assert base.for_shard() is base


def test_shard_settings_are_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        load_default_config(
            environ={"TRADING_ENGINE__ENGINE__SHARD": "2", "TRADING_ENGINE__ENGINE__SHARDS": "2"}
        )
    assert "engine.shard: 2 is not below engine.shards (2)" in caught.value.problems
    data = {
        "engine": {"shards": 2},
        "instruments": [
            {"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.001"},
            {"symbol": "ETH-USD", "tick_size": "0.01", "lot_size": "0.001"},
        ],
        "strategies": [{"name": "pair", "class": "threshold", "symbols": ["BTC-USD", "ETH-USD"]}],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ={})
    assert any("a strategy must live in one shard" in p for p in caught.value.problems)


def test_capture_path_says_what_it_records() -> None:
    # As the feed does (tests/integration/test_feed.py, capture tests):
    # every complete frame, rejected ones included.
    from trading_engine.config import FeedConfig

    description = FeedConfig.model_fields["capture_path"].description
    assert description is not None
    assert "every complete frame" in description
    assert "rejected ones included" in description


def test_the_shipped_limits_fit_the_venue_budget() -> None:
    from trading_engine.config import budget_problems

    shipped = load_config(ROOT / "config" / "engine.toml", environ={})
    assert shipped.gateway.mode == "fast"
    assert parse_config({}, environ={}).gateway.mode == "fast"  # the default path
    assert budget_problems(shipped) == []
    # The defaults fit each other: 50 orders/s, a cancel each and 10 polls in 120 requests/s.
    assert budget_problems(parse_config({}, environ={})) == []
    # The old shipped numbers: 50 orders/s against a 20 requests/s budget.
    old = parse_config(
        {"gateway": {"max_requests_per_s": 20}, "risk": {"max_orders_per_s": 50}}, environ={}
    )
    assert budget_problems(old) == [
        "gateway.max_requests_per_s: 20 is below what risk.max_orders_per_s 50 needs with a "
        "cancel per order and fill polls every 0.1 s (110 requests/s)"
    ]
    simulated = parse_config({"gateway": {"mode": "simulated"}}, environ={})
    assert budget_problems(simulated) == []


@pytest.mark.parametrize(
    ("gateway", "key"),
    [
        ({"base_url": "ftp://x"}, "gateway.base_url"),
        ({"max_requests_per_s": 0}, "gateway.max_requests_per_s"),
        ({"max_order_wait_s": -1}, "gateway.max_order_wait_s"),
        ({"max_retry_after_s": 0}, "gateway.max_retry_after_s"),
        ({"settle_backoff_s": 5, "read_backoff_max_s": 1}, "gateway.settle_backoff_s"),
        ({"ws_api_url": "https://x"}, "gateway.ws_api_url"),
        ({"user_stream_ping_s": 0}, "gateway.user_stream_ping_s"),
        (
            {"user_stream_ping_s": 30, "user_stream_silence_s": 30},
            "gateway.user_stream_silence_s",
        ),
        (
            {"fills_poll_s": 5, "user_stream_fills_poll_s": 1},
            "gateway.user_stream_fills_poll_s",
        ),
    ],
)
def test_bad_gateway_settings_name_their_key(gateway: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"gateway": gateway}, environ={})
    assert any(problem.startswith(key) for problem in caught.value.problems), caught.value.problems


def test_the_admin_port_cannot_be_the_feed_port() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"feed": {"port": 7001}, "admin": {"port": 7001}}, environ={})
    assert caught.value.problems == ["admin.port: 7001 is also feed.port; give each its own port"]
    parse_config({"feed": {"port": 0}, "admin": {"port": 0}}, environ={})  # both free ports


def _binance_strategies(deployment: str, *names: str) -> dict[str, object]:
    return {
        "engine": {"deployment": deployment},
        "gateway": {"venue": "binance"},
        "instruments": [{"symbol": "BTCUSDT", "tick_size": "0.01", "lot_size": "0.00001"}],
        "strategies": [{"name": name, "class": "m:C", "symbols": ["BTCUSDT"]} for name in names],
    }


def test_binance_takes_the_longest_names_that_fit() -> None:
    # 36 = deployment + 3 dashes + a 10-character run id + 5 counter digits + the name.
    config = parse_config(_binance_strategies("d" * 8, "s" * 10, "a-b_c"), environ={})
    assert config.gateway.venue == "binance"
    config = parse_config(_binance_strategies("te", "s" * 16), environ={})
    assert config.strategies[0].name == "s" * 16


@pytest.mark.parametrize(
    ("deployment", "name", "room"),
    [("d" * 8, "s" * 11, 10), ("te", "s" * 17, 16), ("te", "mm.v2", 16)],
)
def test_binance_refuses_names_that_cannot_form_an_id(
    deployment: str, name: str, room: int
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_binance_strategies(deployment, name), environ={})
    (problem,) = caught.value.problems
    assert problem.startswith(f"strategies[0].name: {name!r} cannot form binance client order ids")
    assert f"at most {room} characters of [A-Za-z0-9-_]" in problem
    # The project's own API takes the same names.
    data = _binance_strategies(deployment, name)
    data["gateway"] = {}
    assert parse_config(data, environ={}).strategies[0].name == name


def test_the_venue_must_be_known() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"gateway": {"venue": "kraken"}}, environ={})
    assert caught.value.problems[0].startswith("gateway.venue")


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ("[feed]\nport = true", "feed.port: Input should be a valid integer (value true)"),
        ('[feed]\nport = "7001"', "feed.port: Input should be a valid integer (value '7001')"),
        ("[feed]\nport = 7001.0", "feed.port: Input should be a valid integer (value 7001.0)"),
        (
            '[risk]\ncancel_on_halt = "off"',
            "risk.cancel_on_halt: Input should be a valid boolean (value 'off')",
        ),
        (
            "[risk]\ncancel_on_halt = 0",
            "risk.cancel_on_halt: Input should be a valid boolean (value 0)",
        ),
        (
            '[risk]\nprice_band = "0.05"',
            "risk.price_band: Input should be a valid number (value '0.05')",
        ),
        (
            "[gateway]\ntimeout_s = true",
            "gateway.timeout_s: Input should be a valid number (value true)",
        ),
    ],
)
def test_a_file_value_of_the_wrong_type_is_refused_not_converted(
    tmp_path: Path, toml: str, problem: str
) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert raised.value.problems == [problem]


def test_the_environment_overrides_are_text_and_still_converted(tmp_path: Path) -> None:
    # The overridden key's file value is not checked either: the variable replaces it.
    path = tmp_path / "engine.toml"
    path.write_text("[feed]\nport = true\n[risk]\nprice_band = 0.1\n")
    config = load_config(
        path,
        environ={
            "TRADING_ENGINE__FEED__PORT": "7005",
            "TRADING_ENGINE__RISK__CANCEL_ON_HALT": "false",
        },
    )
    assert config.feed.port == 7005
    assert config.risk.cancel_on_halt is False
    assert config.risk.price_band == 0.1


def test_a_huge_integer_or_inf_is_refused_and_the_type_check_still_holds(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(
        "[gateway]\nmax_requests_per_s = 18446744073709551616\n[feed]\nport = true\n"
        "[breaker]\nslow_call_s = inf\n[engine]\ngc_threshold = 4294967296\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert sorted(raised.value.problems) == [
        "breaker.slow_call_s: Input should be a finite number (value inf)",
        "engine.gc_threshold: Input should be less than or equal to 2147483647 (value 4294967296)",
        "feed.port: Input should be a valid integer (value true)",
        "gateway.max_requests_per_s: Value error, is out of range (at most 2**63 - 1) "
        "(value 18446744073709551616)",
    ]


def test_a_file_nested_beyond_what_the_toml_reader_recurses_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text("x = " + "[" * 5000 + "1" + "]" * 5000 + "\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert raised.value.problems == [f"{path}: nested more than 32 tables or arrays deep"]


@pytest.mark.parametrize("depth", [20, 200])
def test_params_nested_too_deep_are_one_line_naming_the_key(tmp_path: Path, depth: int) -> None:
    value = "1"
    for _ in range(depth):
        value = f"{{ a = {value} }}"
    path = tmp_path / "engine.toml"
    path.write_text(
        '[[instruments]]\nsymbol = "BTC-USD"\ntick_size = "0.01"\nlot_size = "0.001"\n'
        '[[strategies]]\nname = "t"\nclass = "strategies.template:Template"\n'
        f'symbols = ["BTC-USD"]\nparams = {{ x = {value} }}\n'
    )
    if depth == 20:  # within the limit
        assert "x" in load_config(path, environ={}).strategies[0].params
        return
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert raised.value.problems == [
        "strategies[0].params.x.a.a...: nested more than 32 tables or arrays deep"
    ]


def test_a_utf8_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_bytes(b"\xef\xbb\xbf[feed]\nport = 7005\n")
    assert load_config(path, environ={}).feed.port == 7005


def test_a_byte_that_is_not_utf8_after_a_byte_order_mark_is_named_where_it_is(
    tmp_path: Path,
) -> None:
    path = tmp_path / "engine.toml"
    path.write_bytes(b"\xef\xbb\xbf[engine]\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"line 2: byte 0xe9 is not UTF-8"):
        load_config(path, environ={})
