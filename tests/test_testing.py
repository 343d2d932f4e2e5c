"""trading_engine.testing: the strategy test kit, on the engine's own pieces."""

from __future__ import annotations

from typing import Any

import pytest

from trading_engine import BookView, Fill, Order, Strategy, TimeInForce
from trading_engine.core.errors import ConfigError
from trading_engine.core.orders import OrderStatus
from trading_engine.engine.engine import Engine
from trading_engine.testing import (
    ScriptedVenue,
    StrategyHarness,
    make_book,
    make_instrument,
    snapshot_frame,
    trade_frame,
    update_frame,
)


class Quoter(Strategy):
    """Quotes one bid a tick under the best bid, tagged; records its callbacks."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.events: list[str] = []

    def on_book(self, book: BookView) -> None:
        bid = book.best_bid
        if bid is None or self.ctx.open_orders(book.symbol):
            return
        self.ctx.buy(book.symbol, 2, bid - 1, tag="quote")

    def on_fill(self, fill: Fill) -> None:
        self.events.append(f"fill {fill.lots}@{fill.price} {fill.tag}")

    def on_order_update(self, order: Order) -> None:
        self.events.append(f"{order.status.value} {order.tag}")


def test_the_documented_example_runs_the_template_on_the_matching_venue() -> None:
    h = StrategyHarness(
        "strategies.template:TemplateStrategy",
        params={"quantity": "0.002", "max_spread_ticks": 3},
    )
    h.snapshot(bids=[("100.00", "1")], asks=[("100.02", "1")])
    order = h.expect_order(side="buy", price="100.02", quantity="0.002", tif="IOC")
    assert order.status is OrderStatus.FILLED
    assert h.position().quantity == 2
    h.expect_no_order()
    h.update(asks=[("100.02", "0"), ("100.10", "1")])  # spread 10 ticks: no order
    h.expect_no_order()


def test_a_scripted_venue_answers_as_the_test_says() -> None:
    h = StrategyHarness(Quoter, venue="scripted")
    venue = h.venue
    assert isinstance(venue, ScriptedVenue)
    h.snapshot(bids=[("100.00", "1")], asks=[("100.05", "1")])
    order = h.expect_order(side="buy", price="99.99", quantity=2, tag="quote", tif="GTC")
    assert order.status is OrderStatus.PENDING_NEW  # no answer yet
    venue.accept(order)
    assert order.status is OrderStatus.NEW
    venue.fill(order, quantity=1, price="99.99")
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert h.position().quantity == 1
    h.stop()  # cancels what is open
    assert venue.cancel_requests == [order]
    assert venue.confirm_cancels() == 1
    assert order.status is OrderStatus.CANCELED
    strategy = h.strategy
    assert isinstance(strategy, Quoter)
    assert strategy.events == [
        "new quote",
        "fill 1@9999 quote",
        "partially_filled quote",
        "canceled quote",
    ]


def test_a_rejected_order_reaches_the_strategy_with_its_reason() -> None:
    h = StrategyHarness(Quoter, venue="scripted")
    assert h.venue is not None
    h.snapshot(bids=[("100.00", "1")], asks=[("100.05", "1")])
    order = h.expect_order()
    h.venue.reject(order, "insufficient_balance")
    assert (order.status, order.reason) == (OrderStatus.REJECTED, "insufficient_balance")
    assert order.held == 0  # nothing held once closed
    # The book moves: with nothing open the strategy quotes again.
    h.update(bids=[("100.01", "1")])
    assert h.expect_order(price="100.00").tag == "quote"


def test_expect_order_names_what_differs_and_the_last_denial() -> None:
    h = StrategyHarness(Quoter, venue="scripted")
    h.snapshot(bids=[("100.00", "1")], asks=[("100.05", "1")])
    with pytest.raises(AssertionError, match=r"price 9999, expected 10000; tag 'quote'"):
        h.expect_order(price="100.00", tag="other")
    h.update(bids=[("100.01", "1")])  # an order is open: the strategy waits
    with pytest.raises(AssertionError, match="no order was sent"):
        h.expect_order()


def test_denials_are_the_engines_own_risk_checks() -> None:
    h = StrategyHarness(Quoter, venue="scripted", risk={"max_order_quantity": "0.001"})
    h.snapshot(bids=[("100.00", "1")], asks=[("100.05", "1")])
    h.expect_no_order()
    assert h.last_denial == "max_quantity"
    assert h.denials() == {"max_quantity": 1}
    with pytest.raises(AssertionError, match="denied: max_quantity"):
        h.expect_order()


def test_a_class_defined_in_a_test_function_can_be_driven() -> None:
    class Local(Strategy):
        def on_book(self, book: BookView) -> None:
            if book.best_ask is not None and not self.ctx.open_orders():
                self.ctx.buy(book.symbol, 1, book.best_ask, TimeInForce.IOC)

    h = StrategyHarness(Local)
    h.snapshot(bids=[("100.00", "1")], asks=[("100.01", "1")])
    assert h.expect_order(price="100.01").status is OrderStatus.FILLED


def test_bad_params_are_the_configuration_error_check_config_gives() -> None:
    with pytest.raises(ConfigError) as info:
        StrategyHarness("template", params={"quantity": "0.0005"})
    assert info.value.problems[0].startswith("strategies[0].params.quantity: ")


def test_the_harness_uses_the_engines_real_pieces() -> None:
    h = StrategyHarness(Quoter)
    assert isinstance(h.engine, Engine)
    assert h.engine.dispatcher.runners == [h.runner]
    assert h.engine.ledger.risk is h.engine.risk


def test_frames_and_books_without_a_harness() -> None:
    inst = make_instrument("ETH-USD", "0.05", "0.01")
    book = make_book([("10.00", "3")], [("10.10", "1")], inst)
    assert (book.best_bid, book.best_ask, book.spread()) == (200, 202, 2)
    with pytest.raises(ValueError, match="live"):
        make_book([("10.10", "1")], [("10.00", "1")], inst)  # crossed
    assert b'"type":"update"' in update_frame("ETH-USD", 2, [("10.00", "0")])
    assert b'"side":"sell"' in trade_frame("ETH-USD", 3, "10.00", "1", "sell")
    assert b'"seq":1' in snapshot_frame("ETH-USD", 1, [], [])


def test_trades_reach_on_trade() -> None:
    class Prints(Strategy):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.prints: list[tuple[int, int]] = []

        def on_book(self, book: BookView) -> None:
            pass

        def on_trade(self, book: BookView, trade: Any) -> None:
            self.prints.append((trade.price, trade.size))

    h = StrategyHarness(Prints)
    h.snapshot(bids=[("100.00", "1")], asks=[("100.01", "1")])
    h.trade("100.01", "0.5", "buy")
    assert h.strategy.prints == [(10001, 500)]  # type: ignore[attr-defined]


def test_the_template_ships_with_its_own_passing_tests() -> None:
    """strategies/test_template.py is the worked example users copy: it must pass as shipped."""
    import inspect

    import strategies.test_template as shipped

    tests = [f for name, f in inspect.getmembers(shipped, inspect.isfunction)
             if name.startswith("test_")]  # fmt: skip
    assert len(tests) >= 4
    for test in tests:
        test()
