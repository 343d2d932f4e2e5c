"""PnL cases worked out by hand. Units: ticks of 0.01 and lots of 0.001."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading_engine import Instrument
from trading_engine.core.positions import Position, Positions
from trading_engine.core.protocol import Side

BTC = Instrument("BTC-USD", "0.01", "0.001")


def test_long_then_close_with_profit() -> None:
    # Buy 1.000 at 100.00, sell 1.000 at 101.50: +1.50.
    position = Position("BTC-USD")
    position.fill(Side.BUY, 10000, 1000)
    assert position.quantity == 1000
    assert position.avg_price == 10000
    assert position.fill(Side.SELL, 10150, 1000) == 150 * 1000
    assert position.quantity == 0
    assert BTC.format_money(position.realized) == "1.50000"
    assert position.avg_price is None


def test_fifo_across_two_entries() -> None:
    # Buy 1 at 100, buy 1 at 102 (avg 101); sell 1 at 103 closes the 100 lot: +3.
    position = Position("X")
    position.fill(Side.BUY, 10000, 1000)
    position.fill(Side.BUY, 10200, 1000)
    assert position.avg_price == 10100
    position.fill(Side.SELL, 10300, 1000)
    assert BTC.format_money(position.realized) == "3.00000"
    assert position.avg_price == 10200
    # Unrealized of the remaining 1 at mid 102.50: +0.50.
    assert BTC.format_money(position.unrealized(Fraction(10250))) == "0.50000"


def test_short_and_flip() -> None:
    # Sell 2 at 100; buy 3 at 99: closes 2 (+2.00) and opens 1 long at 99.
    position = Position("X")
    position.fill(Side.SELL, 10000, 2000)
    assert position.quantity == -2000
    # Short unrealized at mid 99.995 (half tick): 2 * 0.005 = +0.01.
    assert position.unrealized(Fraction(19999, 2)) == Fraction(2 * 1000, 2) * 1
    assert BTC.format_money(position.unrealized(Fraction(19999, 2))) == "0.01000"
    position.fill(Side.BUY, 9900, 3000)
    assert position.quantity == 1000
    assert BTC.format_money(position.realized) == "2.00000"
    assert position.avg_price == 9900


def test_loss_and_unrealized_at_mid() -> None:
    position = Position("X")
    position.fill(Side.BUY, 10001, 1500)  # 1.5 at 100.01
    assert BTC.format_money(position.unrealized(Fraction(10000))) == "-0.01500"
    assert BTC.format_money(position.unrealized(Fraction(10000)), scale=2) == "-0.02"  # half even
    position.fill(Side.SELL, 9990, 500)  # 0.5 at 99.90: -0.055
    assert BTC.format_money(position.realized, scale=4) == "-0.0550"


def test_positions_track_symbol_and_strategy() -> None:
    positions = Positions()
    positions.fill("a", "X", Side.BUY, 100, 5)
    positions.fill("b", "X", Side.SELL, 101, 2)
    assert positions.quantity("X") == 3
    assert positions.of_strategy("a", "X").quantity == 5
    assert positions.of_strategy("b", "X").quantity == -2
    assert positions.quantity("Y") == 0


def test_bad_fills() -> None:
    with pytest.raises(ValueError, match="positive"):
        Position("X").fill(Side.BUY, 0, 1)


@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(1, 1000), st.integers(1, 50)), min_size=1, max_size=40
    )
)
def test_pnl_conserves_cash(fills: list[tuple[bool, int, int]]) -> None:
    """realized + unrealized at any mark == cash flow + inventory at that mark."""
    position = Position("X")
    cash = 0
    for is_buy, price, lots in fills:
        position.fill(Side.BUY if is_buy else Side.SELL, price, lots)
        cash += -price * lots if is_buy else price * lots
    mark = Fraction(517, 1)
    total = position.realized + position.unrealized(mark)
    assert total == cash + mark * position.quantity
    assert position.quantity == sum(lots if b else -lots for b, _, lots in fills)


def test_reprice_puts_a_short_orders_lots_at_their_real_prices() -> None:
    from fractions import Fraction

    position = Position("BTC-USD")
    # A sell of 3 credited at an answer's average 100.01 (real: 100.02, 100.01, 100.00).
    position.fill(Side.SELL, 10001, 3, "s-1")
    position.fill(Side.BUY, Fraction(20003, 2), 1, "b-1")  # closes the oldest short lot
    assert position.realized == Fraction(10001) - Fraction(20003, 2)
    position.reprice(Side.SELL, "s-1", 10001 * 3, [(10002, 1), (10001, 1), (10000, 1)])
    # The closed lot was the first sold (100.02); the two open ones sold at 100.01, 100.00.
    assert position.realized == Fraction(10002) - Fraction(20003, 2)
    assert position.cost == 10001 + 10000
    assert position.quantity == -2
