"""The strategy API: on_timer, order tags, post-only orders, maker/taker fees."""

from __future__ import annotations

import asyncio
import sqlite3
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from prometheus_client import generate_latest

from tests.helpers import wait_until
from trading_engine import BookView, Order, Strategy, TimeInForce, parse_config
from trading_engine.core.clock import ManualClock
from trading_engine.core.errors import ConfigError
from trading_engine.core.orders import OrderStatus
from trading_engine.core.reports import FillReport, OrderReport
from trading_engine.engine.engine import Engine
from trading_engine.engine.reconcile import reconcile
from trading_engine.engine.telemetry import registry_for
from trading_engine.io.journal import SCHEMA_VERSION, Journal
from trading_engine.sim.replay import replay
from trading_engine.sim.venue import simulated_venue
from trading_engine.testing import StrategyHarness, snapshot_frame, update_frame

BTC_FEES = {
    "symbol": "BTC-USD",
    "tick_size": "0.01",
    "lot_size": "0.001",
    "maker_fee": "-0.0001",
    "taker_fee": "0.0005",
}


class Ticker(Strategy):
    """Counts its timer calls; raises from on_timer while ``fail`` is set."""

    fail = False

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.ticks: list[int] = []

    def on_book(self, book: BookView) -> None:
        pass

    def on_timer(self) -> None:
        self.ticks.append(self.ctx.now_ns())
        if self.fail:
            raise RuntimeError("timer broke")


class ReplayTicker(Strategy):
    """Notes the engine clock of each timer call in a class-wide list (replay makes its own)."""

    ticks: ClassVar[list[int]] = []

    def on_book(self, book: BookView) -> None:
        pass

    def on_timer(self) -> None:
        ReplayTicker.ticks.append(self.ctx.now_ns())


class Probe(Strategy):
    """Does nothing by itself: the tests drive its context."""

    def on_book(self, book: BookView) -> None:
        pass


# -- on_timer ---------------------------------------------------------------------------


def test_on_timer_fires_each_interval_of_the_engine_clock() -> None:
    h = StrategyHarness(Ticker, timer_s=0.5, start_s=100.0)
    ticker = h.strategy
    assert isinstance(ticker, Ticker)
    assert h.advance(0.4) == 0
    assert ticker.ticks == []
    assert h.advance(0.1) == 1
    assert ticker.ticks == [100_500_000_000]
    # Three intervals at once: one call, and the next keeps the phase (102.0).
    assert h.advance(1.2) == 1
    assert len(ticker.ticks) == 2
    assert h.advance(0.2) == 0
    assert h.advance(0.1) == 1
    assert ticker.ticks[-1] == 102_000_000_000


def test_a_strategy_without_timer_s_gets_no_timer() -> None:
    h = StrategyHarness(Ticker)
    assert h.advance(3600) == 0
    assert h.strategy.ticks == []  # type: ignore[attr-defined]


def test_errors_in_on_timer_count_and_disable_like_any_hook() -> None:
    h = StrategyHarness(Ticker, timer_s=1, engine={"strategy_error_limit": 3})
    h.strategy.fail = True  # type: ignore[attr-defined]
    for _ in range(3):
        h.advance(1)
    assert h.errors == 3
    assert not h.enabled
    h.advance(1)
    assert len(h.strategy.ticks) == 3  # type: ignore[attr-defined]  # disabled: no more calls


def test_timer_s_is_validated() -> None:
    with pytest.raises(ConfigError) as info:
        StrategyHarness(Ticker, timer_s=0)
    (problem,) = info.value.problems
    assert problem.startswith("strategies[0].timer_s: "), problem


@pytest.mark.asyncio
async def test_a_running_engine_drives_timers_by_itself() -> None:
    cfg = parse_config(
        {
            "instruments": [{"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.001"}],
            "strategies": [
                {"name": "t", "class": "tests.engine.test_strategy_api:Ticker",
                 "symbols": ["BTC-USD"], "timer_s": 0.01}
            ],
            "journal": {"path": ":memory:"},
        },
        environ={},
    )  # fmt: skip
    engine = Engine(cfg, run_id="t", sink_factory=simulated_venue)
    engine.start_strategies()
    task = asyncio.get_running_loop().create_task(engine._timers_forever())
    ticker = engine.runners["t"].strategy
    assert isinstance(ticker, Ticker)
    try:
        await wait_until(lambda: len(ticker.ticks) >= 3, within_s=5)
    finally:
        task.cancel()
    assert ticker.ticks == sorted(ticker.ticks)


def test_replay_fires_timers_on_the_capture_clock() -> None:
    cfg = parse_config(
        {
            "instruments": [{"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.001"}],
            "strategies": [
                {"name": "t", "class": "tests.engine.test_strategy_api:ReplayTicker",
                 "symbols": ["BTC-USD"], "timer_s": 1.0}
            ],
        },
        environ={},
    )  # fmt: skip
    frames = [
        (0, snapshot_frame("BTC-USD", 1, [("100.00", "1")], [("100.01", "1")])),
        (2_500_000_000, update_frame("BTC-USD", 2, [("100.00", "2")])),
        (3_100_000_000, update_frame("BTC-USD", 3, [("100.00", "3")])),
    ]
    ReplayTicker.ticks.clear()
    result = replay(cfg, frames)
    assert result.frames == 3
    # Due at 1 s: fires once when the clock reaches 2.5 s; due again at 3 s: fires at 3.1 s.
    assert ReplayTicker.ticks == [2_500_000_000, 3_100_000_000]


# -- order tags -------------------------------------------------------------------------


def test_a_tag_is_kept_with_the_order_in_status_and_callbacks() -> None:
    h = StrategyHarness(Probe, venue="scripted")
    h.snapshot(bids=[("100.00", "1")], asks=[("100.02", "1")])
    ctx = h.engine.contexts["test"]
    order = ctx.buy("BTC-USD", 3, 9999, tag="leg-1:a.b")
    assert order is not None
    assert order.tag == "leg-1:a.b"
    (listed,) = h.engine.status()["open_order_list"]
    assert listed == {
        "client_order_id": order.client_order_id, "strategy": "test", "symbol": "BTC-USD",
        "side": "buy", "price": "99.99", "quantity": "0.003", "filled": "0.000",
        "status": "pending_new", "time_in_force": "GTC", "post_only": False, "tag": "leg-1:a.b",
    }  # fmt: skip
    # replace keeps the tag.
    again = ctx.replace(order, price=9998)
    assert again is not None
    assert again.tag == "leg-1:a.b"


@pytest.mark.parametrize("tag", ["", "x" * 33, "has space", "ünï", "semi;colon"])
def test_a_bad_tag_is_denied_and_counted(tag: str) -> None:
    h = StrategyHarness(Probe, venue="scripted")
    h.snapshot(bids=[("100.00", "1")], asks=[("100.02", "1")])
    ctx = h.engine.contexts["test"]
    assert ctx.buy("BTC-USD", 1, 9999, tag=tag) is None
    assert ctx.last_denial == "invalid_tag"
    assert h.denials() == {"invalid_tag": 1}
    # Counted for the strategy too (a backtest's ``denied``, /status).
    assert h.engine.runners["test"].denials == {"invalid_tag": 1}
    # post_only on an order that cannot rest: refused and counted the same way.
    assert ctx.buy("BTC-USD", 1, 9999, "IOC", post_only=True) is None
    assert h.engine.runners["test"].denials == {"invalid_tag": 1, "invalid_order": 1}
    h.expect_no_order()


def test_tags_and_post_only_are_journaled(tmp_path: Path) -> None:
    h = StrategyHarness(Probe, venue="scripted")
    journal = Journal.open(str(tmp_path / "j.db"))
    h.engine.attach_journal(journal)
    h.snapshot(bids=[("100.00", "1")], asks=[("100.02", "1")])
    ctx = h.engine.contexts["test"]
    assert ctx.buy("BTC-USD", 1, 9999, tag="t1", post_only=True) is not None
    assert ctx.sell("BTC-USD", 1, 10005) is not None
    journal.flush(raise_errors=True)
    rows = [(o.tag, o.post_only) for o in journal.orders()]
    assert rows == [("t1", 1), (None, 0)]
    journal.close()


# -- post-only --------------------------------------------------------------------------


class Joiner(Strategy):
    """Posts one post-only bid at ``price`` (ticks) when told to; records updates."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.updates: list[tuple[str, str | None]] = []

    def on_book(self, book: BookView) -> None:
        pass

    def on_order_update(self, order: Order) -> None:
        self.updates.append((order.status.value, order.reason))


def test_a_post_only_order_that_would_take_is_rejected_with_its_reason() -> None:
    h = StrategyHarness(Joiner)
    h.snapshot(bids=[("100.00", "1")], asks=[("100.02", "1")])
    ctx = h.engine.contexts["test"]
    order = ctx.buy("BTC-USD", 1, 10002, post_only=True)
    assert order is not None
    assert (order.status, order.reason, order.filled) == (
        OrderStatus.REJECTED,
        "post_only_would_take",
        0,
    )
    assert h.strategy.updates == [("rejected", "post_only_would_take")]  # type: ignore[attr-defined]
    assert h.engine.order_counts["post_only_rejected"] == 1
    assert h.position().quantity == 0
    text = generate_latest(registry_for(h.engine)).decode()
    assert "trading_engine_post_only_rejected_total 1.0" in text


def test_a_post_only_order_that_does_not_cross_rests_and_fills_as_maker() -> None:
    h = StrategyHarness(Joiner, instruments=[BTC_FEES])
    h.snapshot(bids=[("100.00", "1")], asks=[("100.02", "1")])
    ctx = h.engine.contexts["test"]
    order = ctx.buy("BTC-USD", 2, 10001, post_only=True)
    assert order is not None
    assert order.status is OrderStatus.NEW
    h.update(asks=[("100.01", "5")])  # the ask comes down to the bid: it fills, resting
    assert order.status is OrderStatus.FILLED
    # Maker rebate: 100.01 * 0.002 * -0.0001 = -0.000020002, rounded up to -0.00002.
    assert order.fee == -2
    assert h.engine.status()["positions"]["BTC-USD"]["fees"] == "-0.00002"


def test_post_only_needs_a_gtc_limit_order() -> None:
    h = StrategyHarness(Joiner)
    h.snapshot(bids=[("100.00", "1")], asks=[("100.02", "1")])
    ctx = h.engine.contexts["test"]
    assert ctx.buy("BTC-USD", 1, 9999, TimeInForce.IOC, post_only=True) is None
    assert ctx.last_denial == "invalid_order"
    assert ctx.buy("BTC-USD", 1, None, post_only=True) is None  # market
    assert h.denials() == {"invalid_order": 2}


# -- fees -------------------------------------------------------------------------------


def test_a_taker_fill_pays_the_taker_rate_rounded_up() -> None:
    h = StrategyHarness(Probe, instruments=[BTC_FEES])
    h.snapshot(bids=[("100.00", "1")], asks=[("100.01", "1")])
    ctx = h.engine.contexts["test"]
    order = ctx.buy("BTC-USD", 2, 10001, TimeInForce.IOC)
    assert order is not None
    assert order.status is OrderStatus.FILLED
    # 100.01 * 0.002 * 0.0005 = 0.00010001: rounded up to 0.00011 (11 units of 0.00001).
    assert order.fee == 11
    position = h.position()
    assert (position.fees, position.realized) == (11, -11)
    # Sold back at the same price as a taker too: realized is the two fees.
    h.update(bids=[("100.01", "1")], asks=[("100.01", "0"), ("100.03", "1")])
    sold = ctx.sell("BTC-USD", 2, 10001, TimeInForce.IOC)
    assert sold is not None
    assert sold.fee == 11
    assert (position.quantity, position.fees, position.realized) == (0, 22, -22)
    status = h.engine.status()["positions"]["BTC-USD"]
    assert (status["fees"], status["realized_pnl"]) == ("0.00022", "-0.00022")


def test_fills_on_the_placement_answer_are_taker_and_later_ones_maker() -> None:
    h = StrategyHarness(Probe, venue="scripted", instruments=[BTC_FEES])
    assert h.venue is not None
    h.snapshot(bids=[("100.00", "1")], asks=[("100.10", "1")])
    order = h.engine.contexts["test"].buy("BTC-USD", 10, 10000)
    assert order is not None
    h.venue.fill(order, quantity=4)  # on its placement answer: taker
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert order.fee == 20  # 10000 * 4 * 0.0005
    h.venue.fill(order, quantity=6)  # resting: maker rebate 10000 * 6 * -0.0001 = -6
    assert order.fee == 14
    assert h.position().fees == 14


def test_a_venue_reported_fee_wins_over_the_rates() -> None:
    h = StrategyHarness(Probe, venue="scripted", instruments=[BTC_FEES])
    assert h.venue is not None
    h.snapshot(bids=[("100.00", "1")], asks=[("100.10", "1")])
    order = h.engine.contexts["test"].buy("BTC-USD", 10, 10000)
    assert order is not None
    h.venue.fill(order, fee="0.0003")  # 0.0003 / (0.01 * 0.001) = 30 units
    assert order.fee == 30
    assert h.position().fees == 30


def test_fees_of_an_answer_average_become_exactly_the_fills_fees() -> None:
    """An answer credits at its average; the fills log then prices each fill and its fee."""
    h = StrategyHarness(Probe, venue="scripted", instruments=[BTC_FEES])
    h.snapshot(bids=[("100.00", "1")], asks=[("100.10", "1")])
    order = h.engine.contexts["test"].buy("BTC-USD", 3, 10002)
    assert order is not None
    cid = order.client_order_id
    engine = h.engine
    # Filled 1 lot at 100.00 and 2 at 100.01, one fill each: the answer's exact average.
    engine.on_report(OrderReport(cid, OrderStatus.FILLED, 3, Fraction(30002, 3), "X"))
    assert order.fee == 16  # ceil(30002 * 0.0005 = 15.001)
    engine.on_fill(FillReport(cid, 10000, 1, 1, "BTC-USD", order.side))
    engine.on_fill(FillReport(cid, 10001, 1, 2, "BTC-USD", order.side))
    # Two of three lots listed: their fills' fees (5 + 6) charged, 5 + 5 of the 16 taken back.
    assert order.fee == 17
    engine.on_fill(FillReport(cid, 10001, 1, 3, "BTC-USD", order.side))
    # The last lot listed: the rest of the answer's fee taken back, and the order's fees
    # are its fills' own, each rounded up: 5 + 6 + 6.
    assert order.fee == 17
    assert (order.fee_pending, order.fee_pending_lots) == (0, 0)
    assert h.position().fees == 17
    assert h.position().quantity == 3


def test_a_partial_listing_takes_back_part_of_the_answers_fee() -> None:
    h = StrategyHarness(Probe, venue="scripted", instruments=[BTC_FEES])
    h.snapshot(bids=[("100.00", "1")], asks=[("100.10", "1")])
    order = h.engine.contexts["test"].buy("BTC-USD", 4, 10002)
    assert order is not None
    cid = order.client_order_id
    h.engine.on_report(OrderReport(cid, OrderStatus.FILLED, 4, 10001, "X"))
    assert order.fee == 21  # ceil(10001 * 4 * 0.0005 = 20.002)
    h.engine.on_fill(FillReport(cid, 10000, 1, 1, "BTC-USD", order.side, fee=-3))
    # One of four lots listed, with the venue's fee: 21 * 1 // 4 = 5 taken back, -3 charged.
    assert order.fee == 21 - 5 - 3
    h.engine.on_fill(FillReport(cid, 10002, 3, 2, "BTC-USD", order.side, fee=7))
    # The rest listed: the whole remaining 16 taken back; the order's fees are the fills'.
    assert order.fee == -3 + 7
    assert h.position().fees == 4


def test_fee_rates_are_validated() -> None:
    for bad in ("1e-4", "0.2", "-0.5", "abc", "0.0000000000000000001"):
        with pytest.raises(ConfigError) as info:
            StrategyHarness(Probe, instruments=[{**BTC_FEES, "taker_fee": bad}])
        assert info.value.problems[0].startswith("instruments[0].taker_fee: "), bad


def test_fees_are_journaled_and_restored_as_charged(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"

    def engine_with(instrument: dict[str, str]) -> Engine:
        cfg = parse_config(
            {
                "instruments": [instrument],
                "strategies": [
                    {"name": "p", "class": "tests.engine.test_strategy_api:Probe",
                     "symbols": ["BTC-USD"]}
                ],
                "risk": {"max_orders_per_s": 1000},
            },
            environ={},
        )  # fmt: skip
        return Engine(cfg, clock=ManualClock(10**12), sink_factory=simulated_venue)

    first = engine_with(BTC_FEES)
    journal = Journal.open(str(path))
    first.attach_journal(journal)
    first.start_strategies()
    first.builder.set_listener(first.dispatcher)
    first.builder.handle(snapshot_frame("BTC-USD", 1, [("100.00", "1")], [("100.01", "0.002")]))
    order = first.contexts["p"].buy("BTC-USD", 2, 10001, TimeInForce.IOC)
    assert order is not None
    assert order.fee == 11
    # And one still open at the end: 2 of 4 lots filled on arrival, the rest resting.
    resting = first.contexts["p"].buy("BTC-USD", 4, 10001)
    assert resting is not None
    assert (resting.status, resting.fee) == (OrderStatus.PARTIALLY_FILLED, 11)
    journal.flush(raise_errors=True)
    assert [f.fee for f in journal.fills()] == [11, 11]
    journal.close()

    # Restarted with other rates: the journaled fee stands, not a recomputed one.
    second = engine_with({**BTC_FEES, "taker_fee": "0.001"})
    journal = Journal.open(str(path))
    second.attach_journal(journal)
    asyncio.run(reconcile(second, None))
    position = second.positions.of_strategy("p", "BTC-USD")
    # Both orders' fills (the closed one's and the open one's) with their journaled fees.
    assert (position.quantity, position.fees, position.realized) == (4, 22, -22)
    journal.close()


def test_a_version_3_journal_is_migrated_to_tags_and_fees(tmp_path: Path) -> None:
    from trading_engine.io.journal import _MIGRATIONS, SCHEMA_V1

    path = tmp_path / "v3.db"
    db = sqlite3.connect(path)
    # A journal as version 3 wrote it: version 1 and the migrations up to 3.
    db.executescript(SCHEMA_V1 + _MIGRATIONS[1] + _MIGRATIONS[2])
    assert db.execute("SELECT version FROM schema_version").fetchone() == (3,)
    db.execute(
        "INSERT INTO orders (client_order_id, run_id, strategy, symbol, side, type, price,"
        " quantity, time_in_force, status, filled, created_ns, updated_ns)"
        " VALUES ('s-old-1', 'old', 's', 'BTC-USD', 'buy', 'limit', 100, 3, 'GTC', 'filled',"
        " 3, 5, 5)"
    )
    db.execute(
        "INSERT INTO fills (venue, fill_id, client_order_id, strategy, symbol, side, price,"
        " quantity, ts_ns) VALUES (1, 7, 's-old-1', 's', 'BTC-USD', 'buy', 100, 3, 6)"
    )
    db.commit()
    db.close()
    journal = Journal.open(str(path))
    assert journal.schema_version() == SCHEMA_VERSION
    (order,) = journal.orders()
    assert (order.client_order_id, order.tag, order.post_only) == ("s-old-1", None, 0)
    (fill,) = journal.fills()
    assert (fill.fill_id, fill.quantity, fill.fee) == (7, 3, None)
    journal.close()


def test_gateway_fills_with_a_fee_field_are_read_exactly() -> None:
    from trading_engine import Instrument
    from trading_engine.core.errors import UnreadableAnswer
    from trading_engine.core.reports import parse_fill

    btc = {"BTC-USD": Instrument("BTC-USD", "0.01", "0.001")}
    body = {"fill_id": 4, "client_order_id": "a-b-1", "symbol": "BTC-USD", "side": "buy",
            "price": "100.00", "quantity": "0.002", "fee": "-0.000015"}  # fmt: skip
    fill = parse_fill(body, btc)
    assert fill is not None
    assert fill.fee == -1
    assert parse_fill({**body, "fee": None}, btc).fee is None  # type: ignore[union-attr]
    for bad in ("1e-3", 0.1, "", "12345678901234567.0"):
        with pytest.raises(UnreadableAnswer, match="fee"):
            parse_fill({**body, "fee": bad}, btc)
    assert orjson.loads(orjson.dumps(body))["fee"] == "-0.000015"


def test_a_venue_fee_is_charged_where_no_rates_are_configured() -> None:
    h = StrategyHarness(Probe, venue="scripted")  # BTC-USD without fee rates
    assert h.venue is not None
    h.snapshot(bids=[("100.00", "1")], asks=[("100.10", "1")])
    order = h.engine.contexts["test"].buy("BTC-USD", 10, 10000)
    assert order is not None
    h.venue.fill(order, quantity=5)
    assert order.fee == 0
    h.venue.fill(order, quantity=5, fee="-0.00002")
    assert order.fee == -2
    assert (h.position().fees, h.position().realized) == (-2, 2)
