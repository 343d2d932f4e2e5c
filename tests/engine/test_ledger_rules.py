"""The ledger's rules, driven through the engine as the sinks drive it.

Exposure leaves only with credited fills or an accounted-for final
status; halts cancel every open order whatever happened before; the
engine never trades with itself unless told to; restoring after a
restart rebuilds each order's fill accounting.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine.test_engine import (
    BUY,
    SELL,
    S,
    answer,
    exposure,
    make_engine,
    position,
    submit,
)
from trading_engine.core.errors import ConfigError, InvariantError
from trading_engine.core.orders import Order, OrderType, TimeInForce
from trading_engine.core.reports import FillReport, OrderReport
from trading_engine.core.risk import Denial, TradingState

# -- exposure ---------------------------------------------------------------------------


def test_a_filled_answer_that_does_not_account_for_the_order_releases_nothing() -> None:
    engine, _, _ = make_engine()
    order = submit(engine, BUY, 10)
    assert order is not None
    # "filled" with 4 of 10 lots: the answer contradicts itself.
    assert not engine.on_report(OrderReport(order.client_order_id, S.FILLED, 4, 10000))
    assert order.is_open
    assert exposure(engine) == [10, 0]
    assert engine.order_faults["unreadable_answer"] == 1
    engine.ledger._check()


def test_a_final_status_while_fills_lag_keeps_the_unpriced_lots_held() -> None:
    engine, _, _ = make_engine()
    order = submit(engine, BUY, 10)
    assert order is not None
    answer(engine, order, S.FILLED, 10)  # no average: the fills feed prices them
    assert not order.is_open
    assert exposure(engine) == [10, 0]
    assert position(engine) == 0
    engine.on_fill(FillReport(order.client_order_id, 10000, 6, 1))
    assert exposure(engine) == [4, 0]
    assert position(engine) == 6
    engine.on_fill(FillReport(order.client_order_id, 10000, 4, 2))
    assert exposure(engine) == [0, 0]
    assert position(engine) == 10
    engine.ledger._check()


def test_an_overfill_in_an_answer_is_credited_and_halts() -> None:
    engine, _sink, _ = make_engine()
    order = submit(engine, BUY, 10)
    assert order is not None
    answer(engine, order, S.FILLED, 12, "100.00")
    assert position(engine) == 12  # the position is the venue's
    assert engine.order_faults["overfill"] == 1
    assert engine.risk.state is TradingState.HALTED
    assert exposure(engine) == [0, 0]
    engine.ledger._check()


def test_an_overfill_in_the_fills_feed_is_credited_while_running_as_after_a_restart() -> None:
    engine, _, _ = make_engine()
    order = submit(engine, BUY, 10)
    assert order is not None
    engine.on_fill(FillReport(order.client_order_id, 10000, 8, 1))
    engine.on_fill(FillReport(order.client_order_id, 10000, 4, 2))
    # The journal replays both rows at start-up: the same 12 lots.
    assert position(engine) == 12
    assert engine.order_faults["overfill"] == 1
    assert engine.risk.state is TradingState.HALTED


# -- cancels and halts ------------------------------------------------------------------


def test_a_refused_cancel_is_sent_again_by_a_halt() -> None:
    engine, sink, _ = make_engine()
    order = submit(engine, BUY, 10)
    assert order is not None
    assert engine.cancel(order, "probe")
    engine.on_order_fault(order.client_order_id, "cancel_refused")  # the venue said 4xx
    assert order.is_open
    engine.set_trading_state(TradingState.HALTED, "admin")
    assert sink.canceled == [order, order]


def test_a_halt_cancels_every_open_order_even_those_already_cancel_requested() -> None:
    engine, sink, _ = make_engine()
    order = submit(engine, BUY, 10)
    assert order is not None
    assert engine.cancel(order, "probe")
    assert not engine.cancel(order, "probe")  # a strategy asks once
    engine.set_trading_state(TradingState.HALTED, "admin")
    assert sink.canceled == [order, order]  # the sink runs only one at a time


def test_a_strategy_may_cancel_again_after_a_refusal() -> None:
    engine, sink, _ = make_engine()
    order = submit(engine, BUY, 10)
    assert order is not None
    assert engine.cancel(order, "probe")
    engine.on_order_fault(order.client_order_id, "cancel_refused")
    assert engine.cancel(order, "probe")
    assert len(sink.canceled) == 2


# -- self-trade prevention ----------------------------------------------------------------


def test_an_order_crossing_an_own_resting_order_is_refused_by_default() -> None:
    engine, _sink, _ = make_engine()
    bid = submit(engine, BUY, 5, 10005)
    assert bid is not None
    answer(engine, bid, S.NEW, 0)
    assert submit(engine, SELL, 5, 10005) is None
    assert engine.risk.denied[Denial.SELF_TRADE] == 1
    assert submit(engine, SELL, 5, 10006) is not None  # above the bid: no trade
    assert submit(engine, BUY, 5, 10004) is not None  # same side: no trade


def test_cancel_resting_cancels_the_own_orders_the_new_one_would_trade_with() -> None:
    engine, sink, _ = make_engine(self_trade="cancel_resting")
    bid = submit(engine, BUY, 5, 10005)
    low_bid = submit(engine, BUY, 5, 9990)
    assert bid is not None
    assert low_bid is not None
    sell = submit(engine, SELL, 5, 10000)
    assert sell is not None
    assert sink.canceled == [bid]  # the 99.90 bid does not cross 100.00
    assert sink.submitted[-1] is sell


def test_allow_lets_an_order_cross_an_own_resting_order() -> None:
    engine, _sink, _ = make_engine(self_trade="allow")
    assert submit(engine, BUY, 5, 10005) is not None
    assert submit(engine, SELL, 5, 10005) is not None
    assert engine.risk.denied[Denial.SELF_TRADE] == 0


def test_an_unknown_self_trade_policy_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError) as caught:
        make_engine(self_trade="sometimes")
    assert any("risk.self_trade" in problem for problem in caught.value.problems)


# -- restarts ------------------------------------------------------------------------------


def restored(engine: Any, order: Order) -> Order:
    """``order`` as start-up rebuilds it from its journal row."""
    again = Order(
        order.client_order_id,
        order.strategy,
        order.symbol,
        order.side,
        OrderType.LIMIT,
        order.quantity,
        order.price,
        TimeInForce.GTC,
    )
    again.status = S.UNKNOWN
    return again


def test_a_restored_partially_filled_order_is_credited_in_full_when_it_fills_further() -> None:
    first, _, _ = make_engine()
    order = submit(first, BUY, 10)
    assert order is not None
    first.on_fill(FillReport(order.client_order_id, 10000, 4, 1))
    assert position(first) == 4
    # The restart: a new engine replays the journal's row through the ledger.
    engine, _, _ = make_engine()
    engine.restore_order(restored(engine, order))
    engine.ledger.apply_fill(FillReport(order.client_order_id, 10000, 4, 1), journal=False)
    engine.on_report(OrderReport(order.client_order_id, S.PARTIALLY_FILLED, 4, None))
    assert position(engine) == 4
    assert exposure(engine) == [6, 0]
    # After the restart it fills further: every new lot reaches the position.
    engine.on_fill(FillReport(order.client_order_id, 10010, 6, 2))
    assert position(engine) == 10
    assert exposure(engine) == [0, 0]
    engine.on_fill(FillReport(order.client_order_id, 10000, 4, 1))  # redelivered
    assert position(engine) == 10
    engine.ledger._check()


# -- the invariant checker can fail ------------------------------------------------------


def test_the_invariant_checker_sees_a_lot_missing_from_exposure() -> None:
    engine, _, _ = make_engine()
    order = submit(engine, BUY, 10)
    assert order is not None
    engine.ledger._check()
    engine.exposure["BTC-USD"][0] -= 1
    with pytest.raises(InvariantError, match="exposure"):
        engine.ledger._check()


def test_the_invariant_checker_sees_an_order_holding_the_wrong_lots() -> None:
    engine, _, _ = make_engine()
    order = submit(engine, BUY, 10)
    assert order is not None
    order.filled = 3  # credited behind the ledger's back
    with pytest.raises(InvariantError):
        engine.ledger._check()
