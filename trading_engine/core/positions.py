"""Positions and PnL from fills, exactly, in fixed point.

Quantities are signed lots (long > 0). Money is counted in units of
``tick_size * lot_size`` (a price in ticks times a size in lots), so every
fill, cost and realized PnL is an exact ``int``. Realized PnL uses FIFO:
a fill against the position closes its oldest open lots first. The
unrealized PnL at a mid (which may sit on a half tick) is an exact
:class:`~fractions.Fraction` of the same unit; the instrument renders
both at its own precision.

An order answer may credit lots at their average price, which can fall
between ticks: cost and realized PnL are then exact Fractions until the
fills feed's own prices arrive and :meth:`Position.reprice` puts each
lot at the price it really filled at.

Fees (:mod:`trading_engine.core.fees`) are charged to a position in the
same unit with :meth:`Position.charge`: ``fees`` sums them and
``realized`` is net of them (a rebate adds to it).
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction

from .orders import Price
from .protocol import Side

__all__ = ["Position", "Positions"]


def _exact(value: Price) -> Price:
    # type(), not isinstance(): Fraction's ABC metaclass makes isinstance slow.
    if type(value) is Fraction and value.denominator == 1:
        return value.numerator
    return value


class Position:
    """One symbol's position: signed lots, FIFO open lots, realized PnL."""

    __slots__ = ("_lots", "cost", "fees", "quantity", "realized", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        #: Signed lots: > 0 long, < 0 short.
        self.quantity = 0
        #: Sum of price * lots over the open lots (always >= 0).
        self.cost: Price = 0
        #: Realized PnL in tick*lot units, net of fees.
        self.realized: Price = 0
        #: Fees charged, in tick*lot units (negative: rebates exceed fees).
        self.fees = 0
        # [price, lots, tag] oldest first; the tag (an order id or None)
        # names whose lots these are, for reprice.
        self._lots: deque[list[object]] = deque()

    def __repr__(self) -> str:
        return (
            f"Position({self.symbol!r}, quantity={self.quantity}, realized={self.realized}, "
            f"fees={self.fees})"
        )

    def fill(self, side: Side, price: Price, lots: int, tag: str | None = None) -> Price:
        """Apply a fill; returns the PnL it realized (tick*lot units).

        ``price`` in ticks (a Fraction for an average between ticks);
        ``tag`` names the order the lots belong to (for :meth:`reprice`).
        Raises ValueError for price or lots <= 0. ``O(k)`` for the ``k``
        open entries it closes.
        """
        if lots <= 0 or price <= 0:
            raise ValueError(f"a fill needs positive price and lots, got {price} x {lots}")
        sign = 1 if side is Side.BUY else -1
        realized: Price = 0
        remaining = lots
        open_lots = self._lots
        # Close against the opposite side first (FIFO).
        while remaining and self.quantity * sign < 0:
            oldest = open_lots[0]
            entry: Price = oldest[0]  # type: ignore[assignment]
            held: int = oldest[1]  # type: ignore[assignment]
            take = min(remaining, held)
            # Closing a long (sell): gain price - entry; closing a short: entry - price.
            realized += (price - entry) * take * -sign
            self.cost -= entry * take
            if take == held:
                open_lots.popleft()
            else:
                oldest[1] = held - take
            self.quantity += sign * take
            remaining -= take
        if remaining:
            open_lots.append([price, remaining, tag])
            self.cost += price * remaining
            self.quantity += sign * remaining
        if type(price) is int and type(self.cost) is int and type(self.realized) is int:
            self.realized += realized
            return realized
        self.cost = _exact(self.cost)
        self.realized = _exact(self.realized + realized)
        return _exact(realized)

    def charge(self, fee: int) -> None:
        """Charge a fee (tick*lot units; negative: a rebate): ``fees`` and ``realized`` move."""
        self.fees += fee
        realized = self.realized - fee
        self.realized = realized if type(realized) is int else _exact(realized)

    def reprice(
        self, side: Side, tag: str, provisional: Price, fills: list[tuple[int, int]]
    ) -> None:
        """Put an order's credited lots at the prices they really filled at.

        ``fills`` are the order's ``(price ticks, lots)`` in fill order,
        covering every lot credited under ``tag``; ``provisional`` is the
        total cost they were credited at (answers' averages). FIFO closes
        an order's oldest lots first, so its lots still open are the last
        ones of ``fills``: those entries take the real prices (split where
        the real prices differ), and the PnL already realized on the
        others moves by the difference. Exact; ``O(n)`` in the open
        entries (called only when an average was not the real cost).
        """
        open_total = 0
        open_cost: Price = 0
        for entry in self._lots:
            if entry[2] == tag:
                open_total += entry[1]  # type: ignore[operator]
                open_cost += entry[0] * entry[1]  # type: ignore[operator]
        # The real prices of the last ``open_total`` lots, oldest first.
        suffix: list[tuple[int, int]] = []
        need = open_total
        for price, lots in reversed(fills):
            if not need:
                break
            take = min(lots, need)
            suffix.append((price, take))
            need -= take
        suffix.reverse()
        true_total = sum(price * lots for price, lots in fills)
        true_open = sum(price * lots for price, lots in suffix)
        closed_difference = (provisional - open_cost) - (true_total - true_open)
        # A buy credited too cheap realized too much on its closed lots; a sell the reverse.
        self.realized = _exact(
            self.realized + (closed_difference if side is Side.BUY else -closed_difference)
        )
        if open_total:
            rebuilt: deque[list[object]] = deque()
            pieces = iter(suffix)
            piece_price, piece_left = 0, 0
            for entry in self._lots:
                if entry[2] != tag:
                    rebuilt.append(entry)
                    continue
                left: int = entry[1]  # type: ignore[assignment]
                while left:
                    if not piece_left:
                        piece_price, piece_left = next(pieces)
                    take = min(left, piece_left)
                    rebuilt.append([piece_price, take, tag])
                    left -= take
                    piece_left -= take
            self._lots = rebuilt
            self.cost = _exact(self.cost - open_cost + true_open)

    @property
    def avg_price(self) -> Fraction | None:
        """Average entry price of the open lots in ticks, or None when flat."""
        if not self.quantity:
            return None
        return Fraction(self.cost, abs(self.quantity))

    def unrealized(self, mid: Fraction | None) -> Fraction:
        """PnL of the open lots marked at ``mid`` (ticks), tick*lot units."""
        if mid is None or not self.quantity:
            return Fraction(0)
        if self.quantity > 0:
            return mid * self.quantity - self.cost
        return self.cost - mid * -self.quantity


class Positions:
    """Positions per symbol, in total and per strategy."""

    def __init__(self) -> None:
        self.by_symbol: dict[str, Position] = {}
        self.by_strategy: dict[tuple[str, str], Position] = {}

    def get(self, symbol: str) -> Position:
        position = self.by_symbol.get(symbol)
        if position is None:
            position = self.by_symbol[symbol] = Position(symbol)
        return position

    def of_strategy(self, strategy: str, symbol: str) -> Position:
        key = (strategy, symbol)
        position = self.by_strategy.get(key)
        if position is None:
            position = self.by_strategy[key] = Position(symbol)
        return position

    def quantity(self, symbol: str) -> int:
        position = self.by_symbol.get(symbol)
        return 0 if position is None else position.quantity

    def fill(
        self,
        strategy: str,
        symbol: str,
        side: Side,
        price: Price,
        lots: int,
        tag: str | None = None,
    ) -> None:
        """Apply a fill to the symbol's and the strategy's position (see ``Position.fill``)."""
        self.get(symbol).fill(side, price, lots, tag)
        self.of_strategy(strategy, symbol).fill(side, price, lots, tag)

    def charge(self, strategy: str, symbol: str, fee: int) -> None:
        """Charge a fee to the symbol's and the strategy's position (see ``Position.charge``)."""
        if fee:
            self.get(symbol).charge(fee)
            self.of_strategy(strategy, symbol).charge(fee)

    def reprice(
        self,
        strategy: str,
        symbol: str,
        side: Side,
        tag: str,
        provisional: Price,
        fills: list[tuple[int, int]],
    ) -> None:
        """Reprice an order's lots in both positions (see ``Position.reprice``)."""
        self.get(symbol).reprice(side, tag, provisional, fills)
        self.of_strategy(strategy, symbol).reprice(side, tag, provisional, fills)
