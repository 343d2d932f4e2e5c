"""``[gateway] venue = "binance"``: its keys from the environment, checked before start."""

from __future__ import annotations

import pytest

from tests.fakes import config
from tests.sim.binance.helpers import API_KEY, SECRET, ed_private_pem
from trading_engine.config import Config
from trading_engine.core.errors import ConfigError
from trading_engine.engine.runner import build_engine, missing_secrets
from trading_engine.io.gateway import HttpGateway
from trading_engine.venues.binance.order_api import BinanceOrderDialect

USDT = [{"symbol": "BTCUSDT", "tick_size": "0.01", "lot_size": "0.001"}]
PROBE = [{"name": "probe", "class": "tests.fakes:Probe", "symbols": ["BTCUSDT"]}]


def binance(**gateway: object) -> Config:
    settings = {"venue": "binance", "api_secret_env": "BINANCE_SECRET", **gateway}
    return config(PROBE, instruments=USDT, gateway=settings)


def test_a_missing_secret_variable_is_one_line_naming_it() -> None:
    cfg = binance()
    with pytest.raises(ConfigError) as caught:
        build_engine(cfg, environ={"EXCHANGE_API_KEY": API_KEY}, journal=False)
    assert caught.value.problems == [
        "gateway.api_secret_env: no Binance signing key: set BINANCE_SECRET"
    ]
    assert missing_secrets(cfg, {"EXCHANGE_API_KEY": API_KEY}) == caught.value.problems


def test_venue_binance_without_a_key_variable_names_both_keys() -> None:
    cfg = config(PROBE, instruments=USDT, gateway={"venue": "binance"})
    problems = missing_secrets(cfg, {"EXCHANGE_API_KEY": API_KEY})
    assert len(problems) == 1
    assert problems[0].startswith("gateway.api_secret_env:")
    assert "private_key_env" in problems[0]


def test_an_unreadable_private_key_names_its_variable_never_its_value() -> None:
    cfg = binance(api_secret_env=None, private_key_env="BINANCE_KEY")
    env = {"EXCHANGE_API_KEY": API_KEY, "BINANCE_KEY": "/no/such/key.pem"}
    problems = missing_secrets(cfg, env)
    assert len(problems) == 1
    assert problems[0].startswith("gateway.private_key_env: BINANCE_KEY: cannot read")


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["hmac", "ed25519"])
async def test_the_gateway_speaks_binance_with_either_key_and_never_shows_it(kind: str) -> None:
    if kind == "hmac":
        cfg = binance()
        env = {"EXCHANGE_API_KEY": API_KEY, "BINANCE_SECRET": SECRET}
    else:
        cfg = binance(api_secret_env=None, private_key_env="BINANCE_KEY")
        env = {"EXCHANGE_API_KEY": API_KEY, "BINANCE_KEY": ed_private_pem()}
    engine = build_engine(cfg, environ=env, journal=False)
    gateway = engine.sink
    assert isinstance(gateway, HttpGateway)
    assert isinstance(gateway.dialect, BinanceOrderDialect)
    assert gateway.fast is not None
    head = gateway.fast.request_bytes(b"x")
    assert head.startswith(b"POST /api/v3/order HTTP/1.1\r\n")
    assert b"X-MBX-APIKEY: " + API_KEY.encode() in head
    assert b"application/x-www-form-urlencoded" in head
    for text in (repr(gateway), repr(gateway.dialect), repr(gateway.dialect.codec)):
        assert SECRET not in text
        assert API_KEY not in text
        assert "PRIVATE KEY" not in text
    await gateway.close()


@pytest.mark.asyncio
async def test_venue_binance_trades_several_instruments_in_one_process() -> None:
    two = [*USDT, {"symbol": "ETHUSDT", "tick_size": "0.01", "lot_size": "0.001"}]
    cfg = config(
        PROBE, instruments=two, gateway={"venue": "binance", "api_secret_env": "BINANCE_SECRET"}
    )
    env = {"EXCHANGE_API_KEY": API_KEY, "BINANCE_SECRET": SECRET}
    engine = build_engine(cfg, environ=env, journal=False)
    gateway = engine.sink
    assert isinstance(gateway, HttpGateway)
    # One fills stream, one cursor, per symbol.
    assert gateway.fill_streams == ("BTCUSDT", "ETHUSDT")
    assert gateway.fills_cursors == {"BTCUSDT": 0, "ETHUSDT": 0}
    await gateway.close()


@pytest.mark.parametrize("kind", ["venue_banned", "venue_auth_failed"])
def test_a_ban_or_a_refused_key_halts_trading(kind: str) -> None:
    from tests.engine.test_engine import make_engine
    from trading_engine.core.risk import TradingState

    engine, _, _ = make_engine()
    engine.on_order_fault("*", kind)
    assert engine.risk.state is TradingState.HALTED
    assert engine.state_by == ("risk", kind)
    assert engine.order_faults[kind] == 1


def test_an_unset_api_key_is_one_line_saying_so_not_a_complaint_about_its_characters() -> None:
    from trading_engine.engine.runner import prepare_engine

    with pytest.raises(ConfigError) as caught:
        prepare_engine(binance(), environ={"BINANCE_SECRET": SECRET}, journal=False)
    assert caught.value.problems == [
        "gateway.api_key_env: the environment variable EXCHANGE_API_KEY is not set"
    ]
    # check-config builds without it (a note, not an error).
    engine = prepare_engine(
        binance(), environ={"BINANCE_SECRET": SECRET}, require_secrets=False, journal=False
    )
    assert isinstance(engine.sink, HttpGateway)
