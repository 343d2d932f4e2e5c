"""The metric names the project exports, for checking the queries that use them."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest


def _series_names(text: str) -> set[str]:
    """The series names an exposition's families give (empty families too), by type."""
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\w+) (\w+)$", text, re.MULTILINE):
        if kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        elif kind == "counter":
            names.add(name if name.endswith("_total") else f"{name}_total")
        else:
            names.add(name)
    return names


def exported_metric_names() -> set[str]:
    """Every series name a Prometheus can scrape from this project.

    The engine's ``/metrics``, the supervisor's of ``run --workers N`` (the
    workers' families plus its own) and a feed handler's, each with the
    names its families' samples take (``_total`` for a counter,
    ``_bucket``, ``_sum`` and ``_count`` for a histogram), families
    without samples yet included.
    """
    from tests.fakes import config
    from trading_engine.engine.engine import Engine
    from trading_engine.engine.supervisor import merged_exposition
    from trading_engine.engine.telemetry import GcMonitor, LoopMonitor, registry_for
    from trading_engine.io.feedhandler import EngineAddress, FeedHandler
    from trading_engine.sim.venue import simulated_venue
    from trading_engine.venues.binance import BinanceMarketData

    engine = Engine(config(), run_id="t", sink_factory=simulated_venue)
    engine_text = generate_latest(registry_for(engine, LoopMonitor(), GcMonitor())).decode()
    supervisor_text = merged_exposition([(0, 0, engine_text, False)], crashes={"x": 1}).decode()
    handler_registry = CollectorRegistry()
    FeedHandler(
        BinanceMarketData(["BTCUSDT"], "http://127.0.0.1:1"),
        ws_url="ws://127.0.0.1:1",
        engines=[EngineAddress("127.0.0.1", 1)],
        symbol_map={"BTCUSDT": "BTC-USD"},
        registry=handler_registry,
    )
    handler_text = generate_latest(handler_registry).decode()
    return (
        _series_names(engine_text)
        | _series_names(supervisor_text)
        | _series_names(handler_text)
        | _series_names(_binance_venue_text())
    )


def _binance_venue_text() -> str:
    """The exposition of a Binance gateway's venue clock and user data stream."""
    from trading_engine.core.instruments import Instrument
    from trading_engine.venues.binance import BinanceSpotCodec, HmacSha256Signer
    from trading_engine.venues.binance.clock import VenueClock, VenueClockCollector
    from trading_engine.venues.binance.user_stream import UserDataStream, UserStreamCollector

    codec = BinanceSpotCodec(
        "k" * 64, HmacSha256Signer("s"), {"BTCUSDT": Instrument("BTCUSDT", "0.01", "0.001")}
    )
    stream = UserDataStream(codec, "ws://127.0.0.1:1/ws-api/v3", lambda update: None)
    registry = CollectorRegistry()
    registry.register(VenueClockCollector(VenueClock(None)))
    registry.register(UserStreamCollector(stream))
    return generate_latest(registry).decode()
