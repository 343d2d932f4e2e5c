"""The per-strategy view: /status, metrics and the demo screen after a scripted run.

Three strategies watch BTC-USD: ``raiser`` raises on every update until
it is disabled, ``oversized`` asks for more than ``max_order_quantity``
on every update (denied by risk), ``filler`` buys once and is filled.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from prometheus_client.exposition import generate_latest

from tests.fakes import config, snapshot, update
from trading_engine.commands.demo import strategy_lines, summary
from trading_engine.core.orders import OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.core.risk import Denial
from trading_engine.core.strategy import BookView, Strategy
from trading_engine.engine.engine import Engine
from trading_engine.engine.telemetry import registry_for
from trading_engine.sim.venue import simulated_venue


class Oversized(Strategy):
    """Asks for 20 BTC (20,000 lots) on every update: always denied ``max_quantity``."""

    def on_book(self, book: BookView) -> None:
        self.ctx.submit(book.symbol, Side.BUY, 20_000, book.best_bid)


class Filler(Strategy):
    """Buys 0.010 IOC at the best ask on the first update, then only watches."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.done = False

    def on_book(self, book: BookView) -> None:
        if not self.done and book.best_ask is not None:
            self.done = True
            self.ctx.submit(book.symbol, Side.BUY, 10, book.best_ask, OrderType.LIMIT,
                            TimeInForce.IOC)  # fmt: skip


def scripted_engine() -> Engine:
    strategies = [
        {"name": "raiser", "class": "tests.fakes:Raiser", "symbols": ["BTC-USD"]},
        {"name": "oversized", "class": f"{__name__}:Oversized", "symbols": ["BTC-USD"]},
        {"name": "filler", "class": f"{__name__}:Filler", "symbols": ["BTC-USD"]},
    ]
    engine = Engine(
        config(strategies, engine={"strategy_error_limit": 3}),
        run_id="t",
        sink_factory=simulated_venue,
    )
    engine.start_strategies()
    engine.builder.handle(snapshot(1, [["99.99", "1"]], [["100.00", "1"]]))
    for seq in range(2, 6):  # four more updates: raiser fails on three, then is skipped
        engine.builder.handle(update(seq, [["99.98", str(seq)]], []))
    return engine


def test_status_shows_each_strategy_state_errors_denials_fills_and_pnl() -> None:
    before = datetime.now(UTC)
    engine = scripted_engine()
    view = engine.status()["strategies"]
    assert list(view) == ["raiser", "oversized", "filler"]

    raiser = view["raiser"]
    assert raiser["enabled"] is False
    assert raiser["state"] == "disabled"
    assert raiser["errors"] == 3
    assert raiser["disabled_reason"] == "3 consecutive errors, the last RuntimeError: boom"
    assert raiser["last_error"] == "RuntimeError: boom"
    assert raiser["orders"] == 0
    assert raiser["last_order_at"] is None

    oversized = view["oversized"]
    assert oversized["state"] == "running"
    assert oversized["disabled_reason"] is None
    assert oversized["orders"] == 0
    assert oversized["denied"] == 5
    assert oversized["denials"] == {"max_quantity": 5}
    assert oversized["positions"]["BTC-USD"]["quantity"] == "0.000"

    filler = view["filler"]
    assert filler["state"] == "running"
    assert (filler["orders"], filler["fills"], filler["denied"]) == (1, 1, 0)
    position = filler["positions"]["BTC-USD"]
    assert position["quantity"] == "0.010"
    assert position["avg_price"] == "100.00"
    assert position["realized_pnl"] == "0.00000"
    assert filler["realized_pnl"] == "0.00000"
    assert filler["unrealized_pnl"] == position["unrealized_pnl"]
    # 0.010 bought at 100.00, marked at the mid 99.995: -0.00005, exactly.
    assert position["unrealized_pnl"] == "-0.00005"
    for name in ("oversized", "filler"):
        for key in ("last_decision_at", "last_order_at"):
            moment = datetime.fromisoformat(view[name][key].replace("Z", "+00:00"))
            assert before.replace(microsecond=0) <= moment <= datetime.now(UTC)
    # The keys /status always had stay as they were.
    assert {"enabled", "errors", "orders"} <= set(filler)


def test_a_disabled_strategy_and_its_reason_are_on_the_demo_screen() -> None:
    engine = scripted_engine()
    text = "\n".join(strategy_lines(SimpleNamespace(engine=engine)))  # type: ignore[arg-type]
    assert re.search(r"^raiser\s+disabled\s+0\s+0\s+0\s+3 ", text, re.MULTILINE), text
    assert "raiser disabled: 3 consecutive errors, the last RuntimeError: boom" in text
    assert "oversized denials: (max_quantity 5)" in text
    assert re.search(r"^filler\s+running\s+1\s+1\s+0\s+0 BTC-USD\s+0\.010 ", text, re.MULTILINE)


def test_demo_summary_carries_the_per_strategy_view() -> None:
    import json

    engine = scripted_engine()
    service = SimpleNamespace(engine=engine)
    simulator = SimpleNamespace(fills=[])
    document = summary(service, simulator, 1.0)  # type: ignore[arg-type]
    again = json.loads(json.dumps(document, allow_nan=False))
    assert again["strategies"]["raiser"]["disabled_reason"].startswith("3 consecutive errors")
    assert again["strategies"]["oversized"]["denials"] == {"max_quantity": 5}
    assert again["strategies"]["filler"]["fills"] == 1


def _series(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """The samples of ``name`` (a regular expression) by their set of labels."""
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            found[labels] = float(match.group(2))
    return found


def _key(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


def test_strategy_metrics_are_bounded_by_the_configured_names_and_symbols() -> None:
    engine = scripted_engine()
    # A position journaled for a strategy no longer configured, and one of a
    # configured strategy in a symbol it does not watch: no series of their own.
    engine.ledger.credit_unattached("ghost", "ETH-USD", Side.BUY, 10000, 5, "ghost-old-1")
    engine.ledger.credit_unattached("filler", "ETH-USD", Side.BUY, 10000, 5, "filler-old-1")
    text = generate_latest(registry_for(engine)).decode()
    configured = {"raiser", "oversized", "filler"}
    for name in ("orders", "fills", "last_decision_timestamp_seconds"):
        series = _series(text, f"trading_engine_strategy_{name}(?:_total)?")
        assert {dict(labels)["strategy"] for labels in series} == configured, name
    denied = _series(text, "trading_engine_strategy_denied_total")
    assert len(denied) == 3 * len(Denial)  # every strategy times every denial reason
    assert denied[_key(strategy="oversized", reason="max_quantity")] == 5
    assert denied[_key(strategy="filler", reason="max_quantity")] == 0
    orders = _series(text, "trading_engine_strategy_orders_total")
    assert orders[_key(strategy="filler")] == 1
    fills = _series(text, "trading_engine_strategy_fills_total")
    assert fills[_key(strategy="filler")] == 1
    for name in ("position", "realized_pnl", "unrealized_pnl"):
        series = _series(text, f"trading_engine_strategy_{name}")
        assert set(series) == {_key(strategy=s, symbol="BTC-USD") for s in configured}, name
    position = _series(text, "trading_engine_strategy_position")
    assert position[_key(strategy="filler", symbol="BTC-USD")] == 0.01
    decided = _series(text, "trading_engine_strategy_last_decision_timestamp_seconds")
    assert abs(decided[_key(strategy="filler")] - datetime.now(UTC).timestamp()) < 60
    enabled = _series(text, "trading_engine_strategy_enabled")
    assert enabled[_key(strategy="raiser")] == 0


def test_an_order_the_sink_refuses_is_a_denial_of_its_strategy_not_an_order_sent() -> None:
    from tests.fakes import NullSink
    from trading_engine.core.orders import Order

    class Refusing(NullSink):
        def submit(self, order: Order) -> str | None:
            return "rate_limited"  # no request slot: refused now, never sent

    engine = Engine(config(), run_id="t", sink=Refusing())
    engine.builder.handle(snapshot(1, [["99.99", "1"]], [["100.00", "1"]]))
    order = engine.contexts["probe"].buy("BTC-USD", 10, 10000, TimeInForce.IOC)
    assert order is None
    view = engine.status()["strategies"]["probe"]
    assert (view["orders"], view["denied"], view["denials"]) == (0, 1, {"rate_limited": 1})
    assert view["last_order_at"] is not None
    assert view["last_decision_at"] is not None  # its on_book saw the snapshot


def test_summed_pnl_is_a_plain_decimal_on_a_fine_grid() -> None:
    """A money grid of 7 decimals (tick 0.01, lot 0.00001, as Binance's BTCUSDT):
    the strategy's sums read like the per-symbol figures, never ``0E-7``."""
    fine = [{"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.00001"}]
    strategies = [{"name": "probe", "class": "tests.fakes:Probe", "symbols": ["BTC-USD"]}]
    engine = Engine(config(strategies, instruments=fine), run_id="t", sink_factory=simulated_venue)
    engine.start_strategies()
    engine.builder.handle(snapshot(1, [["99.99", "1"]], [["100.00", "1"]]))
    probe = engine.status()["strategies"]["probe"]
    assert probe["positions"]["BTC-USD"]["realized_pnl"] == "0.0000000"
    assert (probe["realized_pnl"], probe["unrealized_pnl"]) == ("0.0000000", "0.0000000")
