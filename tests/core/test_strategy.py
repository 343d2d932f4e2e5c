"""The shipped strategies on scripted books, and strategy loading."""

from __future__ import annotations

import math
import random
from fractions import Fraction
from typing import Any

import pytest

from strategies.market_maker import MarketMaker
from tests.fakes import config, snapshot, update
from trading_engine.core.clock import ManualClock
from trading_engine.core.errors import ConfigError, StrategyError
from trading_engine.core.orders import Order, OrderStatus, OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.core.risk import Denial
from trading_engine.core.strategy import load_strategy_class
from trading_engine.engine.engine import Engine
from trading_engine.sim.venue import simulated_venue


def make(cls: str, params: dict[str, Any], **risk: Any) -> tuple[Engine, ManualClock]:
    clock = ManualClock(start_ns=10**12)
    cfg = config(
        [{"name": "s", "class": cls, "symbols": ["BTC-USD"], "params": params}],
        risk={"max_orders_per_s": 1000, **risk},
    )
    engine = Engine(cfg, clock=clock, run_id="t", sink_factory=simulated_venue)
    engine.start_strategies()
    return engine, clock


def orders(engine: Engine) -> list[Order]:
    return list(engine.orders.values())


THRESHOLD = "strategies.threshold:ThresholdTaker"


def test_threshold_buy_taker() -> None:
    engine, _ = make(THRESHOLD, {"side": "buy", "trigger_price": "99.00", "quantity": "1"})
    engine.builder.handle(snapshot(1, [["98.90", "1"]], [["99.10", "5"]]))
    assert orders(engine) == []  # ask above the trigger
    engine.builder.handle(update(2, [], [["99.00", "2"]]))
    (order,) = orders(engine)
    assert (order.side, order.price, order.quantity) == (Side.BUY, 9900, 1000)
    assert (order.type, order.time_in_force) == (OrderType.LIMIT, TimeInForce.IOC)
    assert order.status is OrderStatus.FILLED
    engine.builder.handle(update(3, [["98.91", "1"]], []))
    assert len(orders(engine)) == 2  # one per update while the trigger holds


def test_threshold_sell_taker_with_cooldown() -> None:
    params = {"side": "sell", "trigger_price": "101.00", "quantity": "0.5", "cooldown_s": 1}
    engine, clock = make(THRESHOLD, params)
    engine.builder.handle(snapshot(1, [["101.00", "1"]], [["101.10", "1"]]))
    engine.builder.handle(update(2, [["101.01", "1"]], []))
    (order,) = orders(engine)
    assert (order.side, order.price, order.quantity) == (Side.SELL, 10100, 500)
    clock.advance(0.5)
    engine.builder.handle(update(3, [["101.02", "1"]], []))
    assert len(orders(engine)) == 1  # cooling down
    clock.advance(0.6)
    engine.builder.handle(update(4, [["101.03", "1"]], []))
    assert len(orders(engine)) == 2
    assert orders(engine)[1].price == 10103


def test_threshold_params_are_validated() -> None:
    cases = [
        ({"side": "long", "trigger_price": "1", "quantity": "1"}, "params.side"),
        ({"side": "buy", "trigger_price": "99.001", "quantity": "1"}, "params.trigger_price"),
        ({"side": "buy", "trigger_price": "99", "quantity": "0"}, "params.quantity"),
        ({"side": "buy", "trigger_price": "99", "quantity": "1", "bogus": 1}, "params.bogus"),
    ]
    for params, key in cases:
        with pytest.raises(ConfigError) as info:
            make(THRESHOLD, params)
        (problem,) = info.value.problems
        assert problem.startswith(f"strategies[0].{key}: "), problem


MM = "strategies.market_maker:MarketMaker"


def test_market_maker_quotes_around_microprice_and_requotes() -> None:
    params = {"quantity": "1", "max_inventory": "2", "half_spread_ticks": 2, "skew_ticks": 4}
    engine, _ = make(MM, params)
    # bid 100.00 x 1, ask 100.10 x 1: microprice 100.05.
    engine.builder.handle(snapshot(1, [["100.00", "1"]], [["100.10", "1"]]))
    bid, ask = orders(engine)
    assert (bid.side, bid.price, ask.side, ask.price) == (Side.BUY, 10003, Side.SELL, 10007)
    assert bid.time_in_force is TimeInForce.GTC
    # The ask size grows: microprice moves down to 100.00 + 0.10 * 1/4 = 100.025.
    engine.builder.handle(update(2, [], [["100.10", "3"]]))
    assert bid.status is OrderStatus.CANCELED
    assert ask.status is OrderStatus.CANCELED
    live = [o for o in orders(engine) if o.is_open]
    prices = sorted((o.side.value, o.price) for o in live)
    assert prices == [("buy", 10000), ("sell", 10005)]


def test_market_maker_skews_with_inventory_and_stops_at_the_limit() -> None:
    params = {"quantity": "1", "max_inventory": "2", "half_spread_ticks": 2, "skew_ticks": 4}
    engine, _ = make(MM, params)
    engine.positions.fill("s", "BTC-USD", Side.BUY, 10000, 1000)  # long 1 of max 2
    engine.builder.handle(snapshot(1, [["100.00", "1"]], [["100.10", "1"]]))
    quotes = sorted((o.side.value, o.price) for o in orders(engine))
    # Fair 100.05 skewed down by 4 * 1/2 = 2 ticks: 100.03 -> bid 100.01, ask 100.05.
    assert quotes == [("buy", 10001), ("sell", 10005)]
    engine.positions.fill("s", "BTC-USD", Side.BUY, 10000, 1000)  # at the limit
    engine.builder.handle(update(2, [["99.99", "1"]], []))
    open_sides = {o.side for o in orders(engine) if o.is_open}
    assert open_sides == {Side.SELL}  # no more bids


def _exact_targets(
    top: tuple[int, int, int, int], inventory: int, limit: int, skew: int, half: int
) -> tuple[int | None, int | None]:
    """The market maker's quotes computed with exact rationals (the definition)."""
    bid, bid_size, ask, ask_size = top
    fair = Fraction(bid * ask_size + ask * bid_size, bid_size + ask_size)
    skewed = fair - Fraction(skew * max(-limit, min(limit, inventory)), limit)
    quote_bid = min(math.floor(skewed - half), ask - 1)
    quote_ask = max(math.ceil(skewed + half), bid + 1)
    return (
        quote_bid if inventory < limit and quote_bid > 0 else None,
        quote_ask if inventory > -limit else None,
    )


def test_market_maker_integer_quotes_equal_the_exact_rational_ones() -> None:
    rng = random.Random(23)
    for _ in range(200):
        limit_lots = rng.randint(1, 5000)
        half = rng.randint(1, 6)
        skew = rng.randint(0, 9)
        params = {"quantity": "0.001", "max_inventory": f"{limit_lots / 1000:.3f}",
                  "half_spread_ticks": half, "skew_ticks": skew}  # fmt: skip
        engine, _ = make(MM, params)
        strategy = engine.runners["s"].strategy
        assert isinstance(strategy, MarketMaker)
        for _ in range(20):
            bid = rng.randint(1, 10**7)
            top = (bid, rng.randint(1, 10**9), bid + rng.randint(1, 40), rng.randint(1, 10**9))
            inventory = rng.randint(-2 * limit_lots, 2 * limit_lots)
            engine.positions.of_strategy("s", "BTC-USD").quantity = inventory
            view = _Top(top)
            assert strategy.targets(view) == _exact_targets(top, inventory, limit_lots, skew, half)  # type: ignore[arg-type]


class _Top:
    """What ``MarketMaker.targets`` reads of a BookView."""

    symbol = "BTC-USD"

    def __init__(self, top: tuple[int, int, int, int]) -> None:
        self._top = top

    def top(self) -> tuple[int, int, int, int]:
        return self._top


IMB = "strategies.imbalance:ImbalanceTaker"


def test_imbalance_taker_follows_the_heavier_side() -> None:
    params = {"quantity": "1", "max_position": "1", "threshold": 0.5, "levels": 2}
    engine, _ = make(IMB, params)
    engine.builder.handle(snapshot(1, [["100.00", "9"], ["99.99", "9"]], [["100.01", "1"]]))
    (buy,) = orders(engine)
    assert (buy.side, buy.price, buy.time_in_force) == (Side.BUY, 10001, TimeInForce.IOC)
    assert buy.status is OrderStatus.FILLED
    engine.builder.handle(update(2, [["100.00", "8"]], []))
    assert len(orders(engine)) == 1  # at max_position
    engine.builder.handle(update(3, [["100.00", "1"], ["99.99", "1"]], [["100.01", "20"]]))
    sell = orders(engine)[-1]
    assert (sell.side, sell.price) == (Side.SELL, 10000)


def test_template_loads_by_entry_point_and_by_path() -> None:
    by_name = load_strategy_class("t", "template")
    by_path = load_strategy_class("t", "strategies.template:TemplateStrategy")
    assert by_name is by_path
    engine, _ = make("template", {"quantity": "0.002", "max_spread_ticks": 3})
    engine.builder.handle(snapshot(1, [["100.00", "1"]], [["100.02", "1"]]))
    (order,) = orders(engine)
    assert (order.quantity, order.price) == (2, 10002)
    assert order.status is OrderStatus.FILLED
    strategy = engine.runners["s"].strategy
    assert strategy.fills == 1  # type: ignore[attr-defined]


def test_the_installed_entry_points_are_read_once_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Reading them scans every installed distribution: once, however many
    # strategies (or backtests of a sweep) load by name.
    import trading_engine.core.strategy as module

    calls: list[str] = []
    real = module.entry_points

    def counting(*, group: str) -> Any:
        calls.append(group)
        return real(group=group)

    monkeypatch.setattr(module, "entry_points", counting)
    module._entry_points.cache_clear()
    try:
        for _ in range(3):
            assert load_strategy_class("t", "template").__name__ == "TemplateStrategy"
        with pytest.raises(StrategyError, match="neither module:Class nor an entry point"):
            load_strategy_class("t", "not-an-entry-point")
        assert calls == ["trading_engine.strategies"]
    finally:
        module._entry_points.cache_clear()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope.module:Thing", "cannot import"),
        ("strategies.template:Missing", "has no 'Missing'"),
        ("not-an-entry-point", "neither module:Class nor an entry point"),
        ("trading_engine.core.book:OrderBook", "not a Strategy subclass"),
        ("trading_engine.core.strategy:Strategy", "does not implement on_book"),
    ],
)
def test_loading_errors_name_the_strategy(spec: str, message: str) -> None:
    with pytest.raises(StrategyError, match=message) as info:
        load_strategy_class("mine", spec)
    assert "'mine'" in str(info.value)
    (problem,) = info.value.problems
    assert problem.startswith("class: ")


def test_the_template_imports_only_public_names() -> None:
    import ast
    from pathlib import Path

    import trading_engine

    source = Path(__file__).resolve().parents[2] / "strategies" / "template.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
            assert not any(name.startswith(("trading_engine.", "strategies")) for name in modules)
        elif isinstance(node, ast.ImportFrom):
            assert node.module is not None
            assert not node.module.startswith(("trading_engine.", "strategies")), node.module
            if node.module == "trading_engine":
                for alias in node.names:
                    assert alias.name in trading_engine.__all__, alias.name


def test_threshold_taker_stops_at_its_own_max_position_instead_of_being_denied() -> None:
    params = {"side": "buy", "trigger_price": "99.00", "quantity": "1", "max_position": "2"}
    engine, _ = make(THRESHOLD, params)
    engine.builder.handle(snapshot(1, [["98.90", "1"]], [["99.00", "50"]]))
    for seq in range(2, 6):
        engine.builder.handle(update(seq, [["98.9" + str(seq), "1"]], []))
    assert [o.status for o in orders(engine)] == [OrderStatus.FILLED] * 2
    assert engine.positions.quantity("BTC-USD") == 2000
    assert sum(engine.risk.denied.values()) == 0


def test_market_maker_requotes_a_side_at_most_once_per_interval() -> None:
    params = {"quantity": "1", "max_inventory": "2", "requote_interval_s": 0.25}
    engine, clock = make(MM, params)
    engine.builder.handle(snapshot(1, [["100.00", "1"]], [["100.10", "1"]]))
    assert len(orders(engine)) == 2
    clock.advance(0.1)
    engine.builder.handle(update(2, [], [["100.10", "3"]]))  # targets move down
    assert len(orders(engine)) == 2  # within the interval: the quotes stay
    clock.advance(0.2)
    engine.builder.handle(update(3, [], [["100.10", "4"]]))
    assert len(orders(engine)) == 4  # both sides replaced
    assert sum(engine.risk.denied.values()) == 0


def test_market_maker_never_crosses_its_own_quote_being_replaced() -> None:
    params = {"quantity": "1", "max_inventory": "2", "half_spread_ticks": 2, "skew_ticks": 4}
    engine, _ = make(MM, params, self_trade="refuse")
    engine.builder.handle(snapshot(1, [["100.00", "1"]], [["100.10", "1"]]))
    bid, ask = orders(engine)
    assert (bid.price, ask.price) == (10003, 10007)
    # The market jumps up: the new bid target (100.12) would cross the own ask
    # at 100.07, which still rests while the bid side is requoted first.
    engine.builder.handle(
        update(2, [["100.00", "0"], ["100.08", "1"]], [["100.10", "0"], ["100.20", "1"]])
    )
    assert engine.risk.denied[Denial.SELF_TRADE] == 0
    live = sorted((o.side.value, o.price) for o in orders(engine) if o.is_open)
    assert live == [("buy", 10006), ("sell", 10016)]


def test_market_maker_does_not_ask_again_on_every_update_after_a_refusal() -> None:
    from trading_engine.core.risk import TradingState

    params = {"quantity": "1", "max_inventory": "2", "requote_interval_s": 0.25}
    engine, clock = make(MM, params)
    engine.set_trading_state(TradingState.HALTED)
    engine.builder.handle(snapshot(1, [["100.00", "1"]], [["100.10", "1"]]))
    for seq in range(2, 6):
        clock.advance(0.01)
        engine.builder.handle(update(seq, [["99.9" + str(seq), "1"]], []))
    assert engine.risk.denied[Denial.HALTED] == 2  # one request per side, not one per update
    clock.advance(0.25)
    engine.builder.handle(update(6, [["99.96", "1"]], []))
    assert engine.risk.denied[Denial.HALTED] == 4


def test_threshold_taker_cools_down_after_a_refused_order_too() -> None:
    from trading_engine.core.risk import TradingState

    params = {"side": "buy", "trigger_price": "99.00", "quantity": "1", "cooldown_s": 0.5}
    engine, clock = make(THRESHOLD, params)
    engine.set_trading_state(TradingState.HALTED)
    engine.builder.handle(snapshot(1, [["98.90", "1"]], [["99.00", "5"]]))
    for seq in range(2, 6):
        clock.advance(0.1)
        engine.builder.handle(update(seq, [["98.9" + str(seq), "1"]], []))
    assert engine.risk.denied[Denial.HALTED] == 1  # asked once, not once per update
    clock.advance(0.2)
    engine.builder.handle(update(6, [["98.96", "1"]], []))
    assert engine.risk.denied[Denial.HALTED] == 2


class MarketMakerWithoutShortcut(MarketMaker):
    """The market maker with its unchanged-inputs shortcut forgotten before every update."""

    def on_book(self, book: Any) -> None:
        self._settled.clear()
        super().on_book(book)


class CountingMarketMaker(MarketMaker):
    """The market maker counting its updates and its full evaluations."""

    updates = 0
    evaluations = 0

    def on_book(self, book: Any) -> None:
        CountingMarketMaker.updates += 1
        super().on_book(book)

    def _targets(self, symbol: str, top: Any, inventory: int) -> tuple[int | None, int | None]:
        CountingMarketMaker.evaluations += 1
        return super()._targets(symbol, top, inventory)


@pytest.mark.parametrize(
    ("params", "latency_us"),
    [
        ({"quantity": "0.05", "max_inventory": "1", "requote_interval_s": 0.05}, 200),
        ({"quantity": "0.05", "max_inventory": "0.2", "half_spread_ticks": 1}, 200),
        ({"quantity": "0.1", "max_inventory": "0.3", "requote_ticks": 3, "skew_ticks": 5,
          "half_spread_ticks": 1, "requote_interval_s": 0.2}, 200),
        # Cancels answered several updates later: quotes clamped by an own order
        # being canceled move once its cancel is answered, the touch unchanged.
        ({"quantity": "0.1", "max_inventory": "0.3", "skew_ticks": 8,
          "half_spread_ticks": 1}, 5000),
    ],
)  # fmt: skip
def test_the_market_makers_shortcut_decides_exactly_as_a_full_evaluation(
    tmp_path: Any, params: dict[str, Any], latency_us: int
) -> None:
    """Skipping updates whose touch and inventory did not move changes no order, fill or mark."""
    from benchmarks.backtest import SYMBOLS, write_data
    from tests.backtest.test_golden import digest
    from trading_engine.backtest.runner import BacktestOptions, run_backtest
    from trading_engine.config import parse_config

    data = write_data(tmp_path, 6000, seed=7)
    raw: dict[str, Any] = {
        "instruments": [
            {"symbol": s, "tick_size": "0.01", "lot_size": "0.001", "maker_fee": "0.0001",
             "taker_fee": "0.0005"} for s in SYMBOLS
        ],
        "risk": {"max_orders_per_s": 1000, "max_position": "1000"},
        "journal": {"path": ":memory:"},
        "backtest": {"queue_model": "prob", "order_latency_us": latency_us,
                     "response_latency_us": latency_us},
    }  # fmt: skip
    digests = []
    CountingMarketMaker.updates = CountingMarketMaker.evaluations = 0
    for cls in ("CountingMarketMaker", "MarketMakerWithoutShortcut"):
        raw["strategies"] = [
            {"name": "maker", "class": f"tests.core.test_strategy:{cls}",
             "symbols": ["BTC-USD", "ETH-USD"], "params": params}
        ]  # fmt: skip
        result = run_backtest(
            parse_config(raw, environ={}), data, BacktestOptions(compare_zero_latency=False)
        )
        digests.append(digest(result))
    assert digests[0] == digests[1]
    assert digests[0]["orders"] > 50
    assert digests[0]["fills"] > 0
    # The shortcut was taken: most updates were answered without an evaluation.
    assert CountingMarketMaker.evaluations < CountingMarketMaker.updates / 2


def test_market_maker_requotes_when_the_fills_feed_alone_moves_its_inventory() -> None:
    """A fill listed by the venue's fills log (no order answer) skews the next quotes."""
    from trading_engine.core.reports import FillReport

    params = {"quantity": "1", "max_inventory": "2", "skew_ticks": 4}
    engine, _ = make(MM, params)
    engine.builder.handle(snapshot(1, [["100.00", "1"], ["99.00", "1"]], [["100.10", "1"]]))
    bid, _ = orders(engine)
    engine.builder.handle(update(2, [["99.00", "2"]], []))  # below the touch: nothing to do
    assert len(orders(engine)) == 2
    assert bid.price is not None
    engine.on_fill(FillReport(bid.client_order_id, bid.price, bid.quantity // 2, 1))
    assert engine.positions.quantity("BTC-USD") == bid.quantity // 2
    # No status changed (no on_order_update): only the inventory tells.
    assert [o.status for o in orders(engine)] == [OrderStatus.NEW] * 2
    engine.builder.handle(update(3, [["99.00", "3"]], []))  # the touch unchanged again
    assert len(orders(engine)) == 4  # both quotes moved down against the long inventory
