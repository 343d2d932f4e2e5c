"""Tests of the template strategy: copy this file next to your tests with the template.

Run with ``python3 -m pytest`` (it needs pytest and nothing else). It
drives the strategy through the engine's own books, risk checks and
ledger with ``trading_engine.testing``: market data in, the strategy's
orders out, venue answers back, all on a fake clock and in process.

Point ``STRATEGY`` at your copy (``"mystrategies.spread:TemplateStrategy"``).
"""

from __future__ import annotations

from trading_engine import OrderStatus
from trading_engine.testing import StrategyHarness

STRATEGY = "strategies.template:TemplateStrategy"
PARAMS = {"quantity": "0.002", "max_spread_ticks": 3}


def test_buys_at_the_ask_when_the_spread_is_tight() -> None:
    h = StrategyHarness(STRATEGY, params=PARAMS)  # the matching venue: fills against the book
    h.snapshot(bids=[("100.00", "1")], asks=[("100.02", "1")])
    order = h.expect_order(side="buy", price="100.02", quantity="0.002", tif="IOC")
    assert order.status is OrderStatus.FILLED
    assert h.position().quantity == 2  # lots of 0.001
    assert h.strategy.fills == 1  # type: ignore[attr-defined]


def test_waits_while_the_spread_is_wide() -> None:
    h = StrategyHarness(STRATEGY, params=PARAMS)
    h.snapshot(bids=[("100.00", "1")], asks=[("100.10", "1")])
    h.expect_no_order()
    h.update(asks=[("100.03", "2")])  # 3 ticks: tight enough
    h.expect_order(price="100.03")


def test_one_order_at_a_time_until_the_venue_answers() -> None:
    h = StrategyHarness(STRATEGY, params=PARAMS, venue="scripted")  # the test answers
    assert h.venue is not None
    h.snapshot(bids=[("100.00", "1")], asks=[("100.02", "1")])
    order = h.expect_order(price="100.02")
    h.update(bids=[("100.01", "1")])
    h.expect_no_order()  # its order is still open
    h.venue.reject(order, "insufficient_balance")
    assert order.reason == "insufficient_balance"
    h.update(bids=[("100.00", "2")])
    h.expect_order(price="100.02")  # tries again once nothing is open


def test_pre_trade_risk_applies() -> None:
    h = StrategyHarness(STRATEGY, params=PARAMS, risk={"max_order_quantity": "0.001"})
    h.snapshot(bids=[("100.00", "1")], asks=[("100.02", "1")])
    h.expect_no_order()
    assert h.last_denial == "max_quantity"
