"""Positions and PnL from fills, exactly, in fixed point.

Quantities are signed lots (long > 0). Money is counted in units of
``tick_size * lot_size`` (a price in ticks times a size in lots), so every
fill, cost and realized PnL is an exact ``int``. Realized PnL uses FIFO:
a fill against the position closes its oldest open lots first. The
unrealized PnL at a mid (which may sit on a half tick) is an exact
:class:`~fractions.Fraction` of the same unit; the instrument renders
both at its own precision.
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction

from .protocol import Side

__all__ = ["Position", "Positions"]


class Position:
    """One symbol's position: signed lots, FIFO open lots, realized PnL."""

    __slots__ = ("_lots", "cost", "quantity", "realized", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        #: Signed lots: > 0 long, < 0 short.
        self.quantity = 0
        #: Sum of price * lots over the open lots (always >= 0).
        self.cost = 0
        #: Realized PnL in tick*lot units.
        self.realized = 0
        self._lots: deque[list[int]] = deque()  # [price, lots] oldest first

    def __repr__(self) -> str:
        return f"Position({self.symbol!r}, quantity={self.quantity}, realized={self.realized})"

    def fill(self, side: Side, price: int, lots: int) -> int:
        """Apply a fill; returns the PnL it realized (tick*lot units)."""
        if lots <= 0 or price <= 0:
            raise ValueError(f"a fill needs positive price and lots, got {price} x {lots}")
        sign = 1 if side is Side.BUY else -1
        realized = 0
        remaining = lots
        open_lots = self._lots
        # Close against the opposite side first (FIFO).
        while remaining and self.quantity * sign < 0:
            oldest = open_lots[0]
            take = min(remaining, oldest[1])
            # Closing a long (sell): gain price - entry; closing a short: entry - price.
            realized += (price - oldest[0]) * take * -sign
            self.cost -= oldest[0] * take
            oldest[1] -= take
            if not oldest[1]:
                open_lots.popleft()
            self.quantity += sign * take
            remaining -= take
        if remaining:
            open_lots.append([price, remaining])
            self.cost += price * remaining
            self.quantity += sign * remaining
        self.realized += realized
        return realized

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

    def fill(self, strategy: str, symbol: str, side: Side, price: int, lots: int) -> None:
        self.get(symbol).fill(side, price, lots)
        self.of_strategy(strategy, symbol).fill(side, price, lots)
