from __future__ import annotations

import itertools
import re

import pytest

from trading_engine.core.errors import OrderStateError
from trading_engine.core.orders import (
    BINANCE_ID_RULE,
    TRANSITIONS,
    ClientOrderIds,
    Order,
    OrderStatus,
    OrderType,
    TimeInForce,
    client_id_problem,
)
from trading_engine.core.protocol import Side

S = OrderStatus


def make_order() -> Order:
    return Order("s-1", "s", "BTC-USD", Side.BUY, OrderType.LIMIT, 10, 100, TimeInForce.GTC)


ALLOWED = {
    (S.PENDING_NEW, S.NEW),
    (S.PENDING_NEW, S.PARTIALLY_FILLED),
    (S.PENDING_NEW, S.FILLED),
    (S.PENDING_NEW, S.CANCELED),
    (S.PENDING_NEW, S.REJECTED),
    (S.PENDING_NEW, S.UNKNOWN),
    (S.UNKNOWN, S.NEW),
    (S.UNKNOWN, S.PARTIALLY_FILLED),
    (S.UNKNOWN, S.FILLED),
    (S.UNKNOWN, S.CANCELED),
    (S.UNKNOWN, S.REJECTED),
    (S.NEW, S.PARTIALLY_FILLED),
    (S.NEW, S.FILLED),
    (S.NEW, S.CANCELED),
    (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED),
    (S.PARTIALLY_FILLED, S.FILLED),
    (S.PARTIALLY_FILLED, S.CANCELED),
}


@pytest.mark.parametrize(("start", "end"), list(itertools.product(S, S)))
def test_every_transition(start: OrderStatus, end: OrderStatus) -> None:
    order = make_order()
    order.status = start
    if (start, end) in ALLOWED:
        assert order.transition(end) is True
        assert order.status is end
    elif start is end:
        assert order.transition(end) is False  # already there: no change
    else:
        with pytest.raises(OrderStateError, match=f"{start.value} -> {end.value}"):
            order.transition(end)
        assert order.status is start


def test_transition_table_matches_the_documented_set() -> None:
    table = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert table == ALLOWED


def test_open_and_remaining() -> None:
    order = make_order()
    assert order.is_open
    order.add_fill(100, 4)
    assert order.remaining == 6
    order.transition(S.PARTIALLY_FILLED)
    order.transition(S.CANCELED)
    assert not order.is_open
    assert order.remaining == 0


def test_fills_cannot_exceed_quantity() -> None:
    order = make_order()
    order.add_fill(100, 10)
    with pytest.raises(OrderStateError):
        order.add_fill(100, 1)
    with pytest.raises(OrderStateError):
        make_order().add_fill(100, 0)


def test_client_order_ids_are_unique_and_valid() -> None:
    first = ClientOrderIds()
    second = ClientOrderIds()
    assert first.run_id != second.run_id  # random part differs even in the same second
    ids = {first.next("taker") for _ in range(1000)} | {second.next("taker") for _ in range(1000)}
    assert len(ids) == 2000
    pattern = re.compile(r"[A-Za-z0-9._:-]{1,64}")
    assert all(pattern.fullmatch(i) for i in ids)
    longest = ClientOrderIds("z" * 12).next("n" * 32)
    assert len(longest) <= 64
    with pytest.raises(ValueError, match="run id"):
        ClientOrderIds("bad id")
    with pytest.raises(ValueError, match="strategy name"):
        ClientOrderIds("r").next("sp ace")


def test_client_order_ids_carry_the_deployment_and_name_their_strategy() -> None:
    ids = ClientOrderIds("run1", "prod7")
    first = ids.next("mm-btc.v2")
    assert first == "prod7-mm-btc.v2-run1-1"
    assert ids.owns(first)
    assert ids.strategy_of(first) == "mm-btc.v2"
    # Another deployment's ids, and ids of no deployment, are not this one's.
    assert not ids.owns(ClientOrderIds("run1", "prod").next("mm"))
    assert not ids.owns("prod7-x")
    assert not ids.owns("s1-000000042")
    # The longest deployment, strategy and run id still fit the venue's 64 characters
    # with a counter of six base-36 digits (over two billion orders in one run).
    longest = ClientOrderIds("z" * 12, "d" * 8)
    longest._counter = 36**6 - 2
    assert len(longest.next("n" * 32)) <= 64
    for bad in ("", "a-b", "toolong12", "a_b"):
        with pytest.raises(ValueError, match="deployment"):
            ClientOrderIds("r", bad)


def test_binance_ids_fit_the_venue_rule_at_the_longest_names() -> None:
    # Binance spot newClientOrderId: ^[a-zA-Z0-9-_]{1,36}$.
    pattern = re.compile(r"[a-zA-Z0-9_-]{1,36}")
    ids = ClientOrderIds(None, "d" * 8, BINANCE_ID_RULE)
    assert client_id_problem(BINANCE_ID_RULE, "d" * 8, "s_" * 5) is None
    ids._counter = 36**5 - 2  # the last counter the rule leaves room for
    longest = ids.next("s_" * 5)
    assert pattern.fullmatch(longest), longest
    assert len(longest) == 36
    assert ids.owns(longest)
    assert ids.strategy_of(longest) == "s_" * 5
    # One character more, or one order more, breaks the rule: refused, never sent.
    assert client_id_problem(BINANCE_ID_RULE, "d" * 8, "s" * 11) is not None
    with pytest.raises(ValueError, match="binance client order id"):
        ids.next("s_" * 5)
    with pytest.raises(ValueError, match="binance client order id"):
        ClientOrderIds("r", "te", BINANCE_ID_RULE).next("mm.v2")
    with pytest.raises(ValueError, match="run id"):
        ClientOrderIds("run:1", "te", BINANCE_ID_RULE)
