"""What a hostile or broken venue reports about fills, taken at the ledger."""

from __future__ import annotations

from tests.engine.test_engine import BUY, SELL, S, answer, exposure, make_engine, position, submit
from trading_engine.core.reports import FillReport
from trading_engine.core.risk import TradingState


def test_a_fill_on_the_other_side_of_the_order_halts_and_credits_nothing() -> None:
    engine, _, _ = make_engine()
    order = submit(engine, BUY, 10)
    assert order is not None
    answer(engine, order, S.NEW, 0)
    engine.on_fill(FillReport(order.client_order_id, 10000, 10, 1, "BTC-USD", SELL))
    assert position(engine) == 0
    assert exposure(engine) == [10, 0]
    assert engine.order_faults["fill_mismatch"] == 1
    assert engine.risk.state is TradingState.HALTED
    engine.ledger._check()


def test_a_fill_for_another_symbol_halts_and_credits_nothing() -> None:
    engine, _, _ = make_engine()
    order = submit(engine, BUY, 10)
    assert order is not None
    engine.on_fill(FillReport(order.client_order_id, 10000, 10, 1, "ETH-USD", BUY))
    assert position(engine) == 0
    assert engine.order_faults["fill_mismatch"] == 1
    assert engine.risk.state is TradingState.HALTED


def test_a_fill_on_a_locally_rejected_order_is_a_fault() -> None:
    engine, _, _ = make_engine()
    order = submit(engine, BUY, 10)
    assert order is not None
    engine.on_status(order.client_order_id, S.REJECTED, "halted")
    engine.on_fill(FillReport(order.client_order_id, 10000, 10, 1, "BTC-USD", BUY))
    assert position(engine) == 10  # the position is the venue's
    assert engine.order_faults["fill_after_final"] == 1
