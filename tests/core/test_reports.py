"""Venue answers parsed once, at the edge, into bounded typed reports."""

from __future__ import annotations

import time
from fractions import Fraction

import pytest

from trading_engine import Instrument
from trading_engine.core.errors import UnreadableAnswer
from trading_engine.core.orders import OrderStatus
from trading_engine.core.protocol import Side
from trading_engine.core.reports import parse_fill, parse_order_body

BTC = Instrument("BTC-USD", "0.01", "0.001")


def body(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "order_id": "X-1",
        "client_order_id": "s-r-1",
        "status": "partially_filled",
        "filled_quantity": "0.004",
        "avg_price": "100.015",
        "reason": None,
    }
    base.update(fields)
    return base


def test_an_order_body_becomes_a_typed_report_with_an_exact_average() -> None:
    report = parse_order_body(body(), BTC, "s-r-1")
    assert report.status is OrderStatus.PARTIALLY_FILLED
    assert report.filled_lots == 4
    assert report.avg_price == Fraction(20003, 2)  # between ticks, exact
    assert parse_order_body(body(avg_price="100.01"), BTC).avg_price == 10001
    assert report.exchange_order_id == "X-1"


@pytest.mark.parametrize(
    "status", ["pending_new", "unknown", "expired", "FILLED", "", None, 3, "new "]
)
def test_a_status_outside_the_api_is_unreadable(status: object) -> None:
    with pytest.raises(UnreadableAnswer, match="status"):
        parse_order_body(body(status=status), BTC)


@pytest.mark.parametrize(
    "avg",
    ["1E+5000000", "1e3", "0.00", "0", "-100.00", "NaN", "Infinity", "1" * 60, " 100", 100.0],
)
def test_an_absurd_average_on_a_filled_quantity_is_unreadable(avg: object) -> None:
    started = time.perf_counter()
    with pytest.raises(UnreadableAnswer, match="avg_price"):
        parse_order_body(body(avg_price=avg), BTC)
    # Refused by its grammar and length before any big number is built.
    assert time.perf_counter() - started < 0.1


@pytest.mark.parametrize(
    "filled", ["1E+5000000", "-0.001", "0.0005", "1" * 60, 1, None, "1000000000000000000"]
)
def test_an_absurd_filled_quantity_is_unreadable(filled: object) -> None:
    with pytest.raises(UnreadableAnswer, match="filled_quantity"):
        parse_order_body(body(filled_quantity=filled), BTC)


def test_an_average_is_ignored_when_nothing_filled() -> None:
    report = parse_order_body(body(status="new", filled_quantity="0", avg_price="0.00"), BTC)
    assert report.filled_lots == 0
    assert report.avg_price is None


def test_another_orders_answer_is_unreadable() -> None:
    with pytest.raises(UnreadableAnswer, match="client_order_id"):
        parse_order_body(body(client_order_id="s-r-2"), BTC, "s-r-1")
    with pytest.raises(UnreadableAnswer):
        parse_order_body([1, 2], BTC)


def fill(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "fill_id": 7,
        "client_order_id": "s-r-1",
        "symbol": "BTC-USD",
        "side": "sell",
        "price": "100.02",
        "quantity": "0.003",
        "ts": 1,
    }
    base.update(fields)
    return base


def test_a_fill_becomes_a_typed_report() -> None:
    report = parse_fill(fill(), {"BTC-USD": BTC})
    assert report is not None
    assert (report.fill_id, report.price, report.lots, report.side) == (7, 10002, 3, Side.SELL)
    assert parse_fill(fill(symbol="ETH-USD"), {"BTC-USD": BTC}) is None  # not traded here


@pytest.mark.parametrize(
    "fields",
    [
        {"fill_id": -1},
        {"fill_id": 2**63},
        {"fill_id": "7"},
        {"fill_id": True},
        {"price": "0"},
        {"price": "1E+5"},
        {"quantity": "0"},
        {"quantity": "0.0001"},
        {"side": "long"},
        {"client_order_id": 5},
    ],
)
def test_an_absurd_fill_is_unreadable(fields: dict[str, object]) -> None:
    with pytest.raises(UnreadableAnswer):
        parse_fill(fill(**fields), {"BTC-USD": BTC})
